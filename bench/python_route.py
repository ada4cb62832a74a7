"""The usual Python routes: xarray reads each NetCDF file, zarr-python writes it,
either straight into a Zarr v3 store or, with --icechunk, into an Icechunk
repository with a commit per file (so each file is visible at once, as it is
with zarr-roller: the route a user would pick today).

These are the baselines the Rust pipeline is benchmarked against: what a
scientist would write to roll forecast files into one Zarr v3 array, in one
process.

Usage:
    python bench/python_route.py --notifications FILE.jsonl --variable air_temperature \\
        --out STORE_DIR --chunk-y 485 --chunk-x 521 --window N --fp-step 3600 \\
        --fp-size M [--codec zstd --level 3] [--icechunk]

Each line of the notifications file is a Met Office-style JSON notification
whose ``key`` is a local path. Every file's field goes into the array
``STORE_DIR/<variable>`` of shape (window, fp_size, [other dims...], ny, nx),
chunked (1, 1, [1 per other dim], chunk_y, chunk_x), encoded bytes + the chosen
compressor, fill value NaN. A file lands at (run index, forecast_period //
fp_step), where the run index is the position of its forecast_reference_time
among the distinct ones in the notifications (sorted), modulo the window.
Other dims (realization, height) come from the first file; a length-1 time
dimension is dropped. The array is created on first use, or reused if the
store already has it with the same shape (its encoding is then kept).

With --icechunk, STORE_DIR is an Icechunk repository on local disk (created
if absent); the array is created in a first commit, and every file is written
in a writable session of `main` and committed on its own. Icechunk 2.x needs
Python 3.12 or newer: `./dev bench` makes that environment (.venv-icechunk).

Prints one JSON line: files, wall seconds, files/s, decoded MB/s (float32
bytes read from the files / 1e6 / wall) and peak RSS in MB.
"""

import argparse
import json
import resource
import time
from datetime import UTC, datetime

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec

# Seconds in one unit of each forecast_period_units value a notification may carry.
PERIOD_UNIT_SECONDS = {
    "s": 1, "second": 1, "seconds": 1,
    "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
}
# Time dims a file may carry with length 1; they are not dims of the stored array.
TIME_DIMS = ("time", "forecast_reference_time", "forecast_period")
# Default compression level per codec (the Rust pipeline's defaults).
DEFAULT_LEVEL = {"zstd": 3, "gzip": 5, "blosc": 5}


def parse_args():
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", required=True, help="JSON Lines notifications file")
    parser.add_argument("--variable", required=True, help="variable to read from each file")
    parser.add_argument("--out", required=True, help="Zarr store directory")
    parser.add_argument("--chunk-y", type=int, required=True, help="chunk length along y")
    parser.add_argument("--chunk-x", type=int, required=True, help="chunk length along x")
    parser.add_argument("--window", type=int, required=True, help="number of runs kept")
    parser.add_argument("--fp-step", type=int, required=True, help="forecast period step (s)")
    parser.add_argument("--fp-size", type=int, required=True, help="forecast periods per run")
    parser.add_argument("--codec", choices=sorted(DEFAULT_LEVEL), default="zstd")
    parser.add_argument("--level", type=int, help="compression level (codec default if absent)")
    parser.add_argument("--icechunk", action="store_true",
                        help="write into an Icechunk repository, a commit per file")
    return parser.parse_args()


def instant_seconds(text):
    """Seconds since the epoch of an RFC 3339 time (a time without offset is UTC), or of a
    number of seconds."""
    if isinstance(text, (int, float)):
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def period_seconds(notification):
    """The notification's forecast_period in seconds, honouring forecast_period_units."""
    units = notification.get("forecast_period_units", "seconds")
    return round(float(notification["forecast_period"]) * PERIOD_UNIT_SECONDS[units])


def read_notifications(path):
    """Read the JSON Lines file: a list of (path, frt seconds, forecast period seconds)."""
    with open(path) as lines:
        notifications = [json.loads(line) for line in lines if line.strip()]
    return [
        (n["key"], instant_seconds(n["forecast_reference_time"]), period_seconds(n))
        for n in notifications
    ]


def read_field(path, variable):
    """Read one field with xarray as float32 (fill values as NaN), length-1 time dims dropped."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        field = ds[variable]
        field = field.squeeze([d for d in TIME_DIMS if d in field.dims and field.sizes[d] == 1])
        return field.to_numpy().astype(np.float32, copy=False)


def compressor(codec, level):
    """The zarr-python v3 compressor for a codec name and level."""
    if codec == "zstd":
        return ZstdCodec(level=level)
    if codec == "gzip":
        return GzipCodec(level=level)
    return BloscCodec(cname="lz4", clevel=level, shuffle="shuffle", typesize=4)


def open_target(args, store, field_shape):
    """Open the target array in `store`, creating it (and the root group) on first use."""
    shape = (args.window, args.fp_size, *field_shape)
    root = zarr.open_group(store, mode="a", zarr_format=3)
    if args.variable in root:
        array = root[args.variable]
        if array.shape != shape:
            raise ValueError(f"{args.out}/{args.variable} has shape {array.shape}, not {shape}")
        return array
    chunks = (1, 1, *(1 for _ in field_shape[:-2]), args.chunk_y, args.chunk_x)
    level = DEFAULT_LEVEL[args.codec] if args.level is None else args.level
    return root.create_array(
        args.variable,
        shape=shape,
        chunks=chunks,
        dtype="float32",
        serializer=BytesCodec(),
        compressors=[compressor(args.codec, level)],
        fill_value=np.nan,
    )


class ZarrTarget:
    """A plain Zarr v3 store on local disk: each write is visible when it returns."""

    def __init__(self, args):
        self.args = args
        self.array = None

    def write(self, index, values, path):
        """Write one field at `index`, creating the array on the first."""
        if self.array is None:
            self.array = open_target(self.args, self.args.out, values.shape)
        check_shape(self.array, values, path)
        self.array[index] = values


class IcechunkTarget:
    """An Icechunk repository on local disk: each field is written in its own session of
    `main` and committed, so it is visible at once."""

    def __init__(self, args):
        import icechunk  # only this route needs it (and Python 3.12+)

        storage = icechunk.local_filesystem_storage(args.out)
        if icechunk.Repository.exists(storage):
            self.repo = icechunk.Repository.open(storage)
        else:
            self.repo = icechunk.Repository.create(storage)
        self.args = args
        self.created = False

    def write(self, index, values, path):
        """Write one field at `index` and commit it, creating the array first if needed."""
        session = self.repo.writable_session("main")
        if not self.created:
            open_target(self.args, session.store, values.shape)
            if session.has_uncommitted_changes:
                session.commit("create the array")
            session = self.repo.writable_session("main")
            self.created = True
        array = zarr.open_array(session.store, path=self.args.variable, mode="r+")
        check_shape(array, values, path)
        array[index] = values
        session.commit(f"{path}")


def check_shape(array, values, path):
    """Refuse a field whose shape is not the array's."""
    if values.shape != array.shape[2:]:
        raise ValueError(f"{path}: field shape {values.shape} is not {array.shape[2:]}")


def main():
    """Roll every notified file into the store and print the timing line."""
    args = parse_args()
    start = time.perf_counter()
    notifications = read_notifications(args.notifications)
    run_of = {frt: i for i, frt in enumerate(sorted({frt for _, frt, _ in notifications}))}
    target = IcechunkTarget(args) if args.icechunk else ZarrTarget(args)
    decoded_bytes = 0
    for path, frt, fp in notifications:
        fp_index, remainder = divmod(fp, args.fp_step)
        if remainder or not 0 <= fp_index < args.fp_size:
            raise ValueError(f"{path}: forecast period {fp} s is not a slot of the array")
        values = read_field(path, args.variable)
        target.write((run_of[frt] % args.window, fp_index), values, path)
        decoded_bytes += values.nbytes
    wall = time.perf_counter() - start
    print(json.dumps({
        "route": "icechunk" if args.icechunk else "python",
        "files": len(notifications),
        "seconds": wall,
        "files_per_s": len(notifications) / wall,
        "decoded_mb_per_s": decoded_bytes / 1e6 / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
