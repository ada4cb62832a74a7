"""Reads a rolling dataset through its snapshot URL while the window rolls under it, as a long
computation with a lazily opened dataset would.

usage: read_snapshot.py URL NOTIFICATIONS.jsonl
1. Opens URL (the dataset's newest view) and takes the snapshot URL from its attributes
   (`zarr_roller_snapshot_url`); opens that lazily and prints "opened <snapshot url>".
2. Waits for a line on stdin ("rolled"), then reads the first run of the open dataset and
   checks every field against the source NetCDF files; prints "checked <n>".
3. Waits for a line on stdin ("expired"), then reads the first run again: it must raise, not
   return fill values. Prints one JSON line describing what happened.
"""
import json
import sys

import netCDF4
import numpy as np
import xarray as xr

VARIABLE = "air_temperature"


def main():
    url, notifications = sys.argv[1], sys.argv[2]
    newest = xr.open_zarr(url, consolidated=True, decode_timedelta=True)
    snapshot_url = newest.attrs["zarr_roller_snapshot_url"]
    generation = newest.attrs["zarr_roller_generation"]
    ds = xr.open_zarr(snapshot_url, consolidated=True, decode_timedelta=True)
    assert ds.attrs["zarr_roller_snapshot_url"] == snapshot_url, ds.attrs
    assert ds.attrs["zarr_roller_generation"] == generation, ds.attrs
    first = ds["forecast_reference_time"].values[0]
    print(f"opened {snapshot_url}", flush=True)

    sys.stdin.readline()
    notes = [json.loads(line) for line in open(notifications) if line.strip()]
    checked = 0
    for note in notes:
        frt = np.datetime64(note["forecast_reference_time"].rstrip("Z"), "ns")
        if frt != first:
            continue
        fp = np.timedelta64(int(note["forecast_period"]), "s")
        with netCDF4.Dataset(note["key"]) as nc:
            expected = np.asarray(nc[VARIABLE][:])
        got = ds[VARIABLE].sel(forecast_reference_time=frt, forecast_period=fp).values
        np.testing.assert_array_equal(got, expected.reshape(got.shape))
        checked += 1
    assert checked > 0, "no source file of the first run"
    # The plain URL has moved on: its first run is no longer the snapshot's.
    moved = xr.open_zarr(url, consolidated=True, decode_timedelta=True)
    assert moved["forecast_reference_time"].values[0] != first
    print(f"checked {checked}", flush=True)

    sys.stdin.readline()
    try:
        values = ds[VARIABLE].sel(forecast_reference_time=first).values
        error = None
        nan = bool(np.isnan(values).any())
    except Exception as e:  # what any Zarr client raises on 410 Gone
        error = f"{type(e).__name__}: {e}"
        nan = None
    print(json.dumps({
        "snapshot_url": snapshot_url,
        "generation": generation,
        "checked": checked,
        "error": error,
        "nan": nan,
        "first": str(first),
    }), flush=True)


if __name__ == "__main__":
    main()
