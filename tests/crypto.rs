//! Encrypted streams and erasure by forgetting a key (issue 14, item 5): a forgotten stream's events stay in
//! the log with their positions, versions and types, its content can no longer be read through any path, and
//! no file of the store (nor of a backup taken afterwards) holds its plaintext or its key.
//!
//! Method: real stores in temporary directories. Plaintexts carry a marker that is searched for in the bytes
//! of every file under the directory; the key is read out of the key file (docs/format.md, "Key file") before
//! the forget and searched for the same way. Crashes of the key file's updates are exercised with the I/O
//! failpoints on the real calls (`foldlog::io::testing`) and with the files a crash can leave behind (a torn
//! last record, a temp file of an unfinished rewrite), written by hand.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use foldlog::io::{testing, FaultPlan, PersistEvent};
use foldlog::{
    inspect_directory, Error, ExpectedVersion, NewEvent, Options, Repository, RepositoryError, Root, Store,
    StoreLock, UnitOfWork, Vault,
};
use foldlog_bank::{Account, AccountEvent};

/// Files of a directory image: name and bytes.
type Files = Vec<(String, Vec<u8>)>;

/// Every regular file under `dir`, at any depth.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let entry = entry.expect("entry");
            let kind = entry.file_type().expect("type");
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

/// The files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|f| std::fs::read(f).expect("read").windows(needle.len()).any(|w| w == needle))
        .collect()
}

/// The key `stream` has in the key file: the 32 bytes before its id in its record (docs/format.md).
fn key_of(dir: &Path, stream: &str) -> [u8; 32] {
    let bytes = std::fs::read(dir.join("KEYS")).expect("key file");
    let id = stream.as_bytes();
    let at = (32..bytes.len())
        .step_by(8)
        .find(|&at| {
            bytes[at..].starts_with(b"FKEY")
                && usize::from(u16::from_le_bytes([bytes[at + 6], bytes[at + 7]])) == id.len()
                && bytes[at + 40..].starts_with(id)
        })
        .expect("the stream's record");
    bytes[at + 8..at + 40].try_into().expect("32 bytes")
}

fn secret(i: u64) -> Vec<u8> {
    format!("SECRET-PAYLOAD-{i:04}-the patient's diagnosis").into_bytes()
}

fn secret_meta(i: u64) -> Vec<u8> {
    format!("SECRET-META-{i:04}").into_bytes()
}

/// Appends `n` events with marked payloads and metadata to `stream` through `vault`.
fn fill(vault: &Vault<'_>, stream: &str, n: u64) {
    let payloads: Vec<(Vec<u8>, Vec<u8>)> = (0..n).map(|i| (secret(i), secret_meta(i))).collect();
    let events: Vec<NewEvent<'_>> =
        payloads.iter().map(|(p, m)| NewEvent::new("Noted", p).metadata(m).tags(&["ward:3"])).collect();
    vault.append(stream, ExpectedVersion::NoStream, &events).expect("encrypted append");
}

fn read_only() -> Options {
    Options::default().read_only(true).create_if_missing(false)
}

#[test]
fn encrypted_events_read_back_as_written_and_are_ciphertext_in_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        let vault = Vault::open(&store).expect("vault");
        fill(&vault, "patient-1", 5);
        store.append("ward-3", ExpectedVersion::NoStream, &[NewEvent::new("Opened", b"plain ward")]).unwrap();
        let read: Vec<_> = vault.read_stream("patient-1", 0).collect::<foldlog::Result<_>>().expect("read");
        assert_eq!(read.len(), 5);
        for (i, e) in (0u64..).zip(&read) {
            assert_eq!((&e.payload, &e.metadata, e.stream_version), (&secret(i), &secret_meta(i), i));
            assert_eq!((e.event_type.as_str(), e.tags.as_slice()), ("Noted", &["ward:3".to_owned()][..]));
        }
        // The plain stream reads through the vault as it is stored.
        let plain: Vec<_> = vault.read_stream("ward-3", 0).collect::<foldlog::Result<_>>().unwrap();
        assert_eq!(plain[0].payload, b"plain ward");
        assert!(vault.is_encrypted("patient-1").unwrap() && !vault.is_encrypted("ward-3").unwrap());
        // Any read path's event decrypts through `decrypt`.
        let from_global: Vec<_> =
            store.read_all(0).map(|e| vault.decrypt(&e.unwrap()).unwrap().payload).collect();
        assert_eq!(from_global.first(), Some(&secret(0)));
        drop(vault);
        store.close().expect("close");
    }
    assert!(files_containing(dir.path(), b"SECRET-").is_empty(), "no plaintext in any file");
    let key = dir.path().join("KEYS");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key file is private");
    }
    // Reopened, and from a read-only handle.
    let store = Store::open_with(dir.path(), read_only()).expect("reopen read-only");
    let vault = Vault::open(&store).expect("read-only vault");
    let read: Vec<_> = vault.read_stream("patient-1", 2).collect::<foldlog::Result<_>>().unwrap();
    assert_eq!(read.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(), [secret(2), secret(3), secret(4)]);
    assert!(matches!(
        vault.append("patient-1", ExpectedVersion::Any, &[NewEvent::new("Noted", b"x")]),
        Err(Error::ReadOnly)
    ));
}

#[test]
fn a_forgotten_stream_keeps_its_shape_and_loses_its_content_and_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let vault = Vault::open(&store).expect("vault");
    fill(&vault, "patient-1", 4);
    fill(&vault, "patient-2", 3);
    let key = key_of(dir.path(), "patient-1");
    let other_key = key_of(dir.path(), "patient-2");
    let before: Vec<(u64, u64, String)> = store
        .read_stream("patient-1", 0)
        .map(|e| e.map(|e| (e.position(), e.stream_version(), e.event_type().to_owned())))
        .collect::<foldlog::Result<_>>()
        .unwrap();
    assert_eq!(files_containing(dir.path(), &key), [dir.path().join("KEYS")]);

    vault.forget_stream("patient-1").expect("forget");
    assert!(vault.is_forgotten("patient-1").unwrap());
    // The audit shape stays: positions, versions, types.
    let after: Vec<(u64, u64, String)> = store
        .read_stream("patient-1", 0)
        .map(|e| e.map(|e| (e.position(), e.stream_version(), e.event_type().to_owned())))
        .collect::<foldlog::Result<_>>()
        .unwrap();
    assert_eq!(after, before);
    // The content does not: a typed error, once, naming the stream.
    let mut reads = vault.read_stream("patient-1", 0);
    assert!(matches!(reads.next(), Some(Err(Error::StreamForgotten { stream })) if stream == "patient-1"));
    assert!(reads.next().is_none());
    let raw = store.read_stream("patient-1", 0).next().unwrap().unwrap();
    assert!(matches!(vault.decrypt(&raw), Err(Error::StreamForgotten { .. })));
    assert!(matches!(
        vault.append("patient-1", ExpectedVersion::Any, &[NewEvent::new("Noted", b"again")]),
        Err(Error::StreamForgotten { .. })
    ));
    vault.forget_stream("patient-1").expect("forgetting twice does nothing");
    // The other stream is untouched.
    let other: Vec<_> = vault.read_stream("patient-2", 0).collect::<foldlog::Result<_>>().unwrap();
    assert_eq!(
        other.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(),
        [secret(0), secret(1), secret(2)]
    );
    // Plain and unknown streams cannot be forgotten.
    store.append("ward-3", ExpectedVersion::NoStream, &[NewEvent::new("Opened", b"")]).unwrap();
    assert!(matches!(vault.forget_stream("ward-3"), Err(Error::InvalidArgument(_))));
    assert!(matches!(vault.forget_stream("nobody"), Err(Error::StreamNotFound { .. })));

    drop(vault);
    store.close().expect("close");
    assert!(files_containing(dir.path(), &key).is_empty(), "no file holds the forgotten key");
    assert_eq!(files_containing(dir.path(), &other_key), [dir.path().join("KEYS")], "the other key stays");
    assert!(files_containing(dir.path(), b"SECRET-").is_empty(), "no file holds the plaintext");

    // Reopened: still forgotten, the other stream still readable.
    let store = Store::open(dir.path()).expect("reopen");
    let vault = Vault::open(&store).expect("vault");
    assert!(matches!(vault.read_stream("patient-1", 0).next(), Some(Err(Error::StreamForgotten { .. }))));
    assert_eq!(vault.read_stream("patient-2", 0).count(), 3);
    assert_eq!(store.read_stream("patient-1", 0).count(), 4);
}

#[test]
fn a_backup_before_the_forget_reads_the_stream_and_one_after_holds_no_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let live = tmp.path().join("live");
    let store = Store::open(&live).expect("open");
    let vault = Vault::open(&store).expect("vault");
    fill(&vault, "patient-1", 3);
    fill(&vault, "patient-2", 2);
    store.sync().unwrap();
    let key = key_of(&live, "patient-1");
    store.backup_to(tmp.path().join("before")).expect("backup before");
    vault.forget_stream("patient-1").expect("forget");
    store.backup_to(tmp.path().join("after")).expect("backup after");
    // Through the read-only path the CLI uses too.
    drop(vault);
    drop(store);
    foldlog::backup::backup(&live, tmp.path().join("after-ro"), &Default::default()).expect("backup");

    // A salvaged copy keeps the keys too (positions may move there; ciphertexts do not bind them).
    let report = foldlog::salvage::salvage(&live, tmp.path().join("salvaged"), &Default::default()).unwrap();
    assert!(report.is_complete());
    let salvaged = Store::open(tmp.path().join("salvaged")).expect("open salvaged");
    let vault = Vault::open(&salvaged).expect("vault");
    assert_eq!(vault.read_stream("patient-2", 0).filter(Result::is_ok).count(), 2, "salvage kept the keys");
    assert!(vault.is_forgotten("patient-1").unwrap());
    drop(vault);
    drop(salvaged);

    let before = Store::open(tmp.path().join("before")).expect("open backup");
    let vault = Vault::open(&before).expect("vault");
    let read: Vec<_> = vault.read_stream("patient-1", 0).collect::<foldlog::Result<_>>().unwrap();
    assert_eq!(read.len(), 3, "a backup taken before the forget still reads the stream (copied, not linked)");
    for name in ["after", "after-ro"] {
        let path = tmp.path().join(name);
        assert!(files_containing(&path, &key).is_empty(), "{name}: no copy of the key");
        let store = Store::open(&path).expect("open backup");
        let vault = Vault::open(&store).expect("vault");
        assert!(matches!(vault.read_stream("patient-1", 0).next(), Some(Err(Error::StreamForgotten { .. }))));
        assert_eq!(vault.read_stream("patient-2", 0).count(), 2, "{name}: other streams read");
        assert_eq!(store.read_stream("patient-1", 0).count(), 3, "{name}: the events are there");
    }
}

#[test]
fn a_read_only_handle_follows_new_and_forgotten_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let vault = Vault::open(&store).expect("vault");
    fill(&vault, "patient-1", 1);
    let reader = Store::open_with(dir.path(), read_only()).expect("reader");
    let reader_vault = Vault::open(&reader).expect("reader vault");
    assert_eq!(reader_vault.read_stream("patient-1", 0).count(), 1);
    fill(&vault, "patient-2", 2);
    reader.refresh().unwrap();
    let read: Vec<_> = reader_vault.read_stream("patient-2", 0).collect::<foldlog::Result<_>>().unwrap();
    assert_eq!(read[1].payload, secret(1), "a key created after the reader opened");
    vault.forget_stream("patient-1").unwrap();
    assert!(matches!(
        reader_vault.read_stream("patient-1", 0).next(),
        Some(Err(Error::StreamForgotten { .. }))
    ));
    // One writer's vault per store in a process.
    assert!(matches!(Vault::open(&store), Err(Error::Locked { .. })));
    drop(vault);
    Vault::open(&store).expect("released on drop");
}

#[test]
fn tampered_misplaced_and_foreign_ciphertexts_are_errors_naming_stream_and_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let vault = Vault::open(&store).expect("vault");
    fill(&vault, "patient-1", 1);
    let envelope = store.read_stream("patient-1", 0).next().unwrap().unwrap().payload().to_vec();
    // The same ciphertext under another event type, then plain bytes, both written past the vault.
    store.append("patient-1", ExpectedVersion::Exact(0), &[NewEvent::new("Other", &envelope)]).unwrap();
    let mut altered = envelope.clone();
    let last = altered.len() - 20;
    altered[last] ^= 0x40;
    store.append("patient-1", ExpectedVersion::Exact(1), &[NewEvent::new("Noted", &altered)]).unwrap();
    store.append("patient-1", ExpectedVersion::Exact(2), &[NewEvent::new("Noted", b"plain text")]).unwrap();
    let items: Vec<_> = vault.read_stream("patient-1", 0).collect();
    assert!(items[0].is_ok());
    for (version, item) in (1u64..).zip(&items[1..]) {
        match item {
            Err(Error::Undecryptable { stream, version: v, .. }) => {
                assert_eq!((stream.as_str(), *v), ("patient-1", version));
            }
            other => panic!("version {version}: {other:?}"),
        }
    }
    // A stream with plain events cannot become encrypted.
    store.append("ward-3", ExpectedVersion::NoStream, &[NewEvent::new("Opened", b"")]).unwrap();
    let refused = vault.append("ward-3", ExpectedVersion::Any, &[NewEvent::new("Noted", b"x")]);
    assert!(matches!(refused, Err(Error::InvalidArgument(_))));
}

#[test]
fn aggregates_load_and_save_through_the_vault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let vault = Vault::open(&store).expect("vault");
    let accounts = Repository::<Account>::with_vault(&vault);
    assert!(accounts.is_encrypted());
    let mut alice = Root::<Account>::new("alice");
    alice.execute(|a| a.open("SECRET-OWNER-Alice", 10_000)).unwrap();
    alice.execute(|a| a.deposit(500)).unwrap();
    accounts.save(&mut alice).expect("save");
    let mut alice = accounts.get("alice").expect("load");
    assert_eq!((alice.owner.as_str(), alice.balance, alice.version()), ("SECRET-OWNER-Alice", 10_500, 2));
    alice.execute(|a| a.withdraw(100)).unwrap();
    accounts.save(&mut alice).expect("save again");
    let mut seen = 0;
    let history = accounts.history("alice", |_, _| seen += 1).expect("history");
    assert_eq!((history.balance, seen), (10_400, 3));
    assert_eq!(accounts.get_at("alice", 1).unwrap().balance, 10_000);
    // A unit of work would write the events in the clear: refused, nothing written.
    let mut again = accounts.get("alice").unwrap();
    again.execute(|a| a.deposit(1)).unwrap();
    let mut unit = UnitOfWork::new(&store);
    unit.add(accounts, &mut again);
    assert!(matches!(unit.commit(), Err(RepositoryError::Store(Error::InvalidArgument(_)))));
    assert_eq!(store.stream_version("account-alice"), Some(3));
    // A plain repository sees ciphertext and says so rather than misreading it.
    let plain = Repository::<Account>::new(&store);
    assert!(matches!(plain.get("alice"), Err(RepositoryError::Decode { .. })));
    assert!(files_containing(dir.path(), b"SECRET-OWNER").is_empty());

    vault.forget_stream("account-alice").expect("forget");
    match accounts.get("alice") {
        Err(RepositoryError::Store(Error::StreamForgotten { stream })) => assert_eq!(stream, "account-alice"),
        other => panic!("{other:?}"),
    }
    let mut bob = Root::<Account>::new("bob");
    bob.record(AccountEvent::Opened { owner: "Bob".into(), deposit: 1 });
    accounts.save(&mut bob).expect("other aggregates go on");
    assert_eq!(accounts.get("bob").unwrap().balance, 1);
    drop(vault);
    store.close().expect("close");

    // A key created after a forget lands after the rewritten file's records: all of it reopens.
    let store = Store::open(dir.path()).expect("reopen");
    let vault = Vault::open(&store).expect("the key file opens after a forget and a new key");
    let accounts = Repository::<Account>::with_vault(&vault);
    assert_eq!(accounts.get("bob").unwrap().balance, 1);
    assert!(vault.is_forgotten("account-alice").unwrap());
}

#[test]
fn removing_a_store_removes_the_key_file_and_keeps_a_foreign_file_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        let vault = Vault::open(&store).expect("vault");
        fill(&vault, "patient-1", 1);
    }
    std::fs::write(dir.path().join("KEYS.bak"), b"the user's own copy").unwrap();
    std::fs::write(dir.path().join("KEYS.tmp-x"), b"not a foldlog temp name").unwrap();
    {
        // The writer's vault removes its own stale temp files only.
        let store = Store::open(dir.path()).expect("open");
        drop(Vault::open(&store).expect("vault"));
    }
    assert!(dir.path().join("KEYS.tmp-x").exists() && dir.path().join("KEYS.bak").exists());
    let contents = inspect_directory(dir.path()).unwrap();
    assert!(contents.store_entries.contains(&dir.path().join("KEYS")));
    assert_eq!(contents.foreign.len(), 2, "{contents:?}");
    let lock = StoreLock::acquire(dir.path()).expect("lock");
    let removal = lock.remove_store_files().expect("remove");
    assert!(removal.removed.contains(&dir.path().join("KEYS")));
    assert!(!dir.path().join("KEYS").exists());
    assert_eq!(std::fs::read(dir.path().join("KEYS.bak")).unwrap(), b"the user's own copy");
    assert!(dir.path().join("KEYS.tmp-x").exists());

    // A key file without segments is a log that lost them, not an empty directory to start afresh in.
    std::fs::remove_file(dir.path().join("KEYS.bak")).unwrap();
    std::fs::remove_file(dir.path().join("KEYS.tmp-x")).unwrap();
    std::fs::write(dir.path().join("KEYS"), b"left behind").unwrap();
    drop(lock);
    assert!(matches!(Store::open(dir.path()), Err(Error::Corrupt { .. })));
}

/// What a crash while creating a key leaves: a torn last record. The writer's next open cuts it off; the
/// stream it was for has no key (no event used it: the record is synced first) and gets a new one.
#[test]
fn a_torn_key_record_is_cut_and_its_stream_starts_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = {
        let store = Store::open(dir.path()).expect("open");
        let vault = Vault::open(&store).expect("vault");
        fill(&vault, "patient-1", 1);
        let one = std::fs::read(dir.path().join("KEYS")).unwrap();
        // Creating patient-2's key succeeds; its append is refused (wrong expected version), so no event uses it.
        let refused = vault.append("patient-2", ExpectedVersion::Exact(7), &[NewEvent::new("Noted", b"")]);
        assert!(matches!(refused, Err(Error::WrongExpectedVersion { .. })));
        let two = std::fs::read(dir.path().join("KEYS")).unwrap();
        assert!(two.len() > one.len());
        (one.len(), two)
    };
    let (one_len, two) = whole;
    for cut in one_len + 1..two.len() {
        std::fs::write(dir.path().join("KEYS"), &two[..cut]).unwrap();
        let store = Store::open(dir.path()).expect("open");
        let reader = Store::open_with(dir.path(), read_only()).expect("reader");
        let reader_vault = Vault::open(&reader).expect("a reader opens a torn key file");
        assert!(!reader_vault.is_encrypted("patient-2").unwrap());
        drop(reader_vault);
        drop(reader);
        let vault = Vault::open(&store).expect("the writer opens a torn key file");
        assert_eq!(std::fs::metadata(dir.path().join("KEYS")).unwrap().len(), one_len as u64, "cut at {cut}");
        assert_eq!(vault.read_stream("patient-1", 0).count(), 1);
        assert!(!vault.is_encrypted("patient-2").unwrap());
    }
    let store = Store::open(dir.path()).expect("open");
    let vault = Vault::open(&store).expect("vault");
    fill(&vault, "patient-2", 2);
    assert_eq!(vault.read_stream("patient-2", 0).filter(Result::is_ok).count(), 2);
    // A damaged record with a valid one after it is no crash's doing: corruption, named.
    drop(vault);
    let mut bytes = std::fs::read(dir.path().join("KEYS")).unwrap();
    bytes[32 + 40] ^= 1;
    std::fs::write(dir.path().join("KEYS"), &bytes).unwrap();
    assert!(matches!(Vault::open(&store), Err(Error::Corrupt { .. })));
}

/// Every I/O call of creating a key and of forgetting one, failed in turn: the call reports the error, and
/// the store and its vault reopen with the stream either as it was or forgotten, never a key file that fails
/// to open, never an event under a key that was not durable. A temp file a crash left is removed on open.
#[test]
fn failed_calls_while_creating_or_forgetting_a_key_leave_the_old_or_the_new_state() {
    for nth in 1.. {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let vault = Vault::open(&store).expect("vault");
        fill(&vault, "patient-0", 1);
        testing::arm(FaultPlan {
            dir: dir.path().to_path_buf(),
            nth,
            persistent: false,
            errno: libc::EIO,
            ops: None,
        });
        let created =
            vault.append("patient-1", ExpectedVersion::NoStream, &[NewEvent::new("Noted", &secret(1))]);
        let forgot = created.as_ref().ok().map(|_| vault.forget_stream("patient-1"));
        let (_, failed) = testing::disarm(dir.path());
        drop(vault);
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        let vault = Vault::open(&store).expect("the key file opens after any failure");
        assert_eq!(vault.read_stream("patient-0", 0).filter(Result::is_ok).count(), 1);
        match (&created, &forgot) {
            // The append failed: the key was made durable first, so an event that reached the log anyway
            // (a store failure after its write) still decrypts.
            (Err(_), _) => {
                let items: Vec<_> = vault.read_stream("patient-1", 0).collect();
                assert!(items.iter().all(|i| i.as_ref().is_ok_and(|e| e.payload == secret(1))), "nth {nth}");
            }
            (Ok(_), Some(Ok(()))) => assert!(vault.is_forgotten("patient-1").unwrap(), "nth {nth}"),
            (Ok(_), _) => {
                // Old or new state; forgetting again finishes the job.
                match vault.read_stream("patient-1", 0).next().expect("one item") {
                    Ok(e) => assert_eq!(e.payload, secret(1), "nth {nth}"),
                    Err(Error::StreamForgotten { .. }) => {}
                    Err(e) => panic!("nth {nth}: {e}"),
                }
                vault.forget_stream("patient-1").expect("forget after the failure");
                assert!(vault.is_forgotten("patient-1").unwrap(), "nth {nth}");
            }
        }
        if failed == 0 {
            assert!(nth > 3, "the workload made calls");
            eprintln!("key file failpoints: {} calls failed in turn", nth - 1);
            break;
        }
    }
    // A crash between writing the rewrite's temp file and renaming it leaves the temp file, with keys in it.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let vault = Vault::open(&store).expect("vault");
    fill(&vault, "patient-1", 1);
    drop(vault);
    let temp = dir.path().join("KEYS.tmp-12345-0");
    std::fs::copy(dir.path().join("KEYS"), &temp).unwrap();
    let vault = Vault::open(&store).expect("vault");
    assert!(!temp.exists(), "the stale temp file is removed");
    assert_eq!(vault.read_stream("patient-1", 0).count(), 1);
}

/// Power loss at every point of a forget, on images of the key file built from what the forget recorded at the
/// I/O boundary: for each prefix of its persistence events, the names and bytes as of the last syncs (`lost`),
/// as written (`kept`), and the synced bytes with a random half of the written 512-byte sectors (`torn`).
/// Every image opens; the stream is as it was or forgotten (forgotten once the forget returned); the other
/// stream reads; and once forgotten, no file of the image holds the key (the writer's vault removed a temp
/// file the crash left).
#[test]
fn power_loss_at_every_point_of_a_forget_leaves_the_old_or_the_new_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        let vault = Vault::open(&store).expect("vault");
        fill(&vault, "patient-1", 2);
        fill(&vault, "patient-2", 2);
        drop(vault);
        store.close().expect("close");
    }
    let key = key_of(dir.path(), "patient-1");
    let base: Files = files(dir.path())
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_str().unwrap().to_owned(), std::fs::read(&p).unwrap()))
        .collect();
    let events = {
        let store = Store::open(dir.path()).expect("open");
        let vault = Vault::open(&store).expect("vault");
        testing::record(dir.path());
        vault.forget_stream("patient-1").expect("forget");
        testing::take_recording(dir.path())
    };
    assert!(events.iter().any(|e| matches!(e, PersistEvent::Rename(..))), "{events:?}");

    /// One file: its bytes as of its last sync, and as written.
    #[derive(Clone, Default)]
    struct Inode {
        durable: Vec<u8>,
        current: Vec<u8>,
    }
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_owned();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut coin = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed & 1 == 1
    };
    let mut outcomes = [0usize; 2];
    for crash in 0..=events.len() {
        let mut inodes: Vec<Inode> = Vec::new();
        let mut current: BTreeMap<String, usize> = BTreeMap::new();
        for (n, bytes) in base.iter().filter(|(n, _)| n.starts_with("KEYS")) {
            inodes.push(Inode { durable: bytes.clone(), current: bytes.clone() });
            current.insert(n.clone(), inodes.len() - 1);
        }
        let mut durable_names = current.clone();
        for e in &events[..crash] {
            match e {
                PersistEvent::Create(p) => {
                    inodes.push(Inode::default());
                    current.insert(name(p), inodes.len() - 1);
                }
                PersistEvent::Write(p, at, bytes) => {
                    // A write to a file no name reaches (the replaced key file being zeroed) changes no image.
                    if let Some(&i) = current.get(&name(p)) {
                        let f = &mut inodes[i].current;
                        let end = *at as usize + bytes.len();
                        if f.len() < end {
                            f.resize(end, 0);
                        }
                        f[*at as usize..end].copy_from_slice(bytes);
                    }
                }
                PersistEvent::SyncFile(p) => {
                    if let Some(&i) = current.get(&name(p)) {
                        inodes[i].durable = inodes[i].current.clone();
                    }
                }
                PersistEvent::Rename(from, to) => {
                    if let Some(i) = current.remove(&name(from)) {
                        current.insert(name(to), i);
                    }
                }
                PersistEvent::Remove(p) => {
                    current.remove(&name(p));
                }
                PersistEvent::SyncDir(_) => durable_names = current.clone(),
                // The key file is synced whole, on the caller's thread: its `SyncFile` covers every write before.
                PersistEvent::Allocate(..) | PersistEvent::SyncStart(..) => {}
            }
        }
        let torn = |ino: &Inode, coin: &mut dyn FnMut() -> bool| {
            let mut out = ino.durable.clone();
            out.resize(ino.current.len(), 0);
            for (sector, new) in ino.current.chunks(512).enumerate() {
                let at = sector * 512;
                if ino.durable.get(at..at + new.len()) != Some(new) && coin() {
                    out[at..at + new.len()].copy_from_slice(new);
                }
            }
            out
        };
        let images: Vec<(&str, Files)> = vec![
            ("lost", durable_names.iter().map(|(n, &i)| (n.clone(), inodes[i].durable.clone())).collect()),
            ("kept", current.iter().map(|(n, &i)| (n.clone(), inodes[i].current.clone())).collect()),
            ("torn", current.iter().map(|(n, &i)| (n.clone(), torn(&inodes[i], &mut coin))).collect()),
        ];
        for (variant, keys_files) in images {
            let image = tempfile::tempdir().expect("tempdir");
            for (n, bytes) in base.iter().filter(|(n, _)| !n.starts_with("KEYS")).chain(&keys_files) {
                std::fs::write(image.path().join(n), bytes).unwrap();
            }
            let at = format!("crash point {crash}/{}, {variant}", events.len());
            let store = Store::open(image.path()).unwrap_or_else(|e| panic!("{at}: {e}"));
            let vault =
                Vault::open(&store).unwrap_or_else(|e| panic!("{at}: the key file does not open: {e}"));
            let first = vault.read_stream("patient-1", 0).next().expect("an item");
            let forgotten = match first {
                Ok(e) => {
                    assert_eq!(e.payload, secret(0), "{at}");
                    false
                }
                Err(Error::StreamForgotten { .. }) => true,
                Err(e) => panic!("{at}: {e}"),
            };
            if crash == events.len() {
                assert!(forgotten, "{at}: the forget returned");
            }
            outcomes[usize::from(forgotten)] += 1;
            assert_eq!(vault.read_stream("patient-2", 0).filter(Result::is_ok).count(), 2, "{at}");
            if forgotten {
                assert!(files_containing(image.path(), &key).is_empty(), "{at}: a copy of the key survived");
            }
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "both states were reached: {outcomes:?}");
    eprintln!(
        "forget crash images: {} as before, {} forgotten, over {} events",
        outcomes[0],
        outcomes[1],
        events.len()
    );
}

/// Appends from several threads through one vault while another thread forgets one of their streams: no
/// deadlock, every append either lands readable or is refused as forgotten, and afterwards the forgotten
/// stream reads as forgotten while the others read every event their threads appended.
#[test]
fn appends_from_threads_and_a_concurrent_forget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let vault = Vault::open(&store).expect("vault");
    let counts: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|t| {
                let vault = &vault;
                s.spawn(move || {
                    let stream = format!("patient-{t}");
                    let mut appended = 0;
                    for i in 0..200 {
                        let payload = secret(i);
                        match vault.append(&stream, ExpectedVersion::Any, &[NewEvent::new("Noted", &payload)])
                        {
                            Ok(_) => appended += 1,
                            Err(Error::StreamForgotten { .. }) => break,
                            Err(e) => panic!("{stream}: {e}"),
                        }
                    }
                    appended
                })
            })
            .collect();
        s.spawn(|| {
            while !vault.is_encrypted("patient-0").unwrap() {
                std::thread::yield_now();
            }
            vault.forget_stream("patient-0").expect("forget");
        });
        workers.into_iter().map(|w| w.join().expect("worker")).collect()
    });
    assert!(matches!(vault.read_stream("patient-0", 0).next(), Some(Err(Error::StreamForgotten { .. }))));
    assert_eq!(store.read_stream("patient-0", 0).count() as u64, counts[0]);
    for (t, &count) in counts.iter().enumerate().skip(1) {
        let read: Vec<_> =
            vault.read_stream(&format!("patient-{t}"), 0).collect::<foldlog::Result<_>>().unwrap();
        assert_eq!((read.len() as u64, count), (200, 200));
        assert_eq!(read[199].payload, secret(199));
    }
}
