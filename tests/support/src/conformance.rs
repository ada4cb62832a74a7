//! The storage conformance suite: what every [`Storage`] backend must do, run against each of
//! them (local disk and memory in `tests/storage.rs`, S3 on SeaweedFS in the S3 crate's tests),
//! so a new backend proves itself by passing it.

use bytes::Bytes;
use roller_storage::{Key, Storage};

fn key(s: &str) -> Key {
    Key::new(s).expect("valid key")
}

fn get(store: &dyn Storage, k: &str) -> Option<Bytes> {
    store.get(&key(k)).expect("get")
}

/// Runs every check against `store`, which must be empty. Panics naming the first contract
/// point the backend breaks.
pub fn check_storage(store: &dyn Storage) {
    assert!(
        store.list_prefix("").expect("list").is_empty(),
        "the conformance suite needs an empty store"
    );
    missing_objects_read_as_none(store);
    puts_replace_whole_objects(store);
    ranges_are_clamped_to_the_object(store);
    parts_and_files_store_their_concatenation(store);
    listing_is_sorted_and_bounded_by_the_prefix(store);
    deleting_is_idempotent(store);
}

fn missing_objects_read_as_none(store: &dyn Storage) {
    let k = key("absent/object");
    assert_eq!(store.get(&k).expect("get"), None, "get of a missing object");
    assert_eq!(
        store.get_range(&k, 0, Some(4)).expect("get_range"),
        None,
        "get_range of a missing object"
    );
    assert_eq!(
        store.size(&k).expect("size"),
        None,
        "size of a missing object"
    );
}

fn puts_replace_whole_objects(store: &dyn Storage) {
    let k = key("c/air/0/1");
    store
        .put(&k, Bytes::from_static(b"a longer first value"))
        .expect("put");
    assert_eq!(
        get(store, "c/air/0/1").as_deref(),
        Some(&b"a longer first value"[..])
    );
    store
        .put(&k, Bytes::from_static(b"short"))
        .expect("put again");
    assert_eq!(
        get(store, "c/air/0/1").as_deref(),
        Some(&b"short"[..]),
        "a put replaces the whole object, never leaving a tail of the old one"
    );
    assert_eq!(store.size(&k).expect("size"), Some(5));
    let empty = key("c/air/empty");
    store.put(&empty, Bytes::new()).expect("put empty");
    assert_eq!(
        get(store, "c/air/empty").as_deref(),
        Some(&b""[..]),
        "empty objects exist"
    );
    assert_eq!(store.size(&empty).expect("size"), Some(0));
}

fn ranges_are_clamped_to_the_object(store: &dyn Storage) {
    let k = key("ranges/object");
    store
        .put(&k, Bytes::from_static(b"0123456789"))
        .expect("put");
    let range = |start, len| store.get_range(&k, start, len).expect("get_range");
    assert_eq!(range(2, Some(3)).as_deref(), Some(&b"234"[..]));
    assert_eq!(range(7, None).as_deref(), Some(&b"789"[..]), "to the end");
    assert_eq!(
        range(8, Some(10)).as_deref(),
        Some(&b"89"[..]),
        "clamped at the end"
    );
    assert_eq!(
        range(0, Some(0)).as_deref(),
        Some(&b""[..]),
        "an empty range"
    );
}

fn parts_and_files_store_their_concatenation(store: &dyn Storage) {
    store
        .put_parts(&key("parts/object"), &[b"head-", b"", b"tail"])
        .expect("put_parts");
    assert_eq!(
        get(store, "parts/object").as_deref(),
        Some(&b"head-tail"[..])
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source.bin");
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    std::fs::write(&source, &body).expect("write source");
    store
        .put_file(&key("files/object"), &source)
        .expect("put_file");
    assert_eq!(get(store, "files/object").as_deref(), Some(&body[..]));
    assert!(source.exists(), "put_file leaves its source in place");
}

fn listing_is_sorted_and_bounded_by_the_prefix(store: &dyn Storage) {
    for k in ["list/b/2", "list/a", "list/b/1", "listing/other", "lis"] {
        store.put(&key(k), Bytes::from_static(b"x")).expect("put");
    }
    let listed: Vec<String> = store
        .list_prefix("list/")
        .expect("list")
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(
        listed,
        ["list/a", "list/b/1", "list/b/2"],
        "sorted, under the prefix only"
    );
    let all = store.list_prefix("").expect("list all");
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "a full listing is sorted: {all:?}"
    );
    assert!(store.list_prefix("nothing/").expect("list").is_empty());
}

fn deleting_is_idempotent(store: &dyn Storage) {
    let k = key("list/b/1");
    store.delete(&k).expect("delete");
    assert_eq!(
        store.get(&k).expect("get"),
        None,
        "a deleted object is gone"
    );
    store
        .delete(&k)
        .expect("deleting a missing object succeeds");
    assert_eq!(
        get(store, "list/b/2").as_deref(),
        Some(&b"x"[..]),
        "a neighbour survives"
    );
    for k in store.list_prefix("").expect("list") {
        store.delete(&k).expect("delete");
    }
    assert!(store.list_prefix("").expect("list").is_empty());
}
