//! The taxonomy and its documents read from Google Cloud Storage (`gs://`, on fake-gcs-server)
//! and Azure Blob Storage (`az://`, on Azurite) through the `labflow` binary, with the same
//! leaves and hashes as from disk; and a Parquet dataset written and read back through a
//! [`Location`] opened from each URL.
//!
//! `.ci/run` installs both emulators and sets `LABFLOW_REQUIRE_GCS=1` and
//! `LABFLOW_REQUIRE_AZURE=1`, so in CI a missing one fails its test; elsewhere it is skipped
//! with a `SKIPPED:` line saying how to install it. `tests/common/emulators.rs` records what
//! each emulator lacks.

mod common;

use common::data;
use common::emulators::{azure_url, azurite, env_lock, fake_gcs, gcs_url, Emulator};
use labflow::operators::batch::text_batch;
use labflow::store::dataset::{read_parquet, write_parquet};
use labflow::store::Location;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// `labflow leaves --json` on the real taxonomy and documents, read from disk.
fn local_leaves() -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_labflow"))
        .args(["leaves", data("taxonomy").to_str().expect("utf-8"), "--docs", data("docs").to_str().expect("utf-8"), "--json"])
        .output()
        .expect("labflow runs");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// `labflow leaves URL --docs URL --json` against the emulator equals the same from disk.
fn assert_leaves_match_disk(emulator: &Emulator, taxonomy: &str, docs: &str) {
    let out = emulator.labflow(&["leaves", taxonomy, "--docs", docs, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let remote: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(remote.len(), 16);
    assert_eq!(remote, local_leaves(), "same leaves, kinds and hashes (documents included) from {taxonomy} as from disk");
    assert!(remote.iter().filter(|l| l["kind"] == "knowledge").all(|l| l["documents_hashed"] == true));

    let missing = emulator.labflow(&["validate", &taxonomy.replace("/taxonomy", "/no/such/prefix")]);
    assert_eq!(missing.status.code(), Some(2), "{}", String::from_utf8_lossy(&missing.stderr));
}

/// Every file under `dir`, as `/`-separated paths relative to it.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under dir");
                out.push(rel.to_str().expect("utf-8").replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

/// Upload every file under `src` to `loc`, through labflow's own store (object_store's put).
async fn upload(loc: &Location, src: &Path) -> usize {
    let files = files(src);
    for rel in &files {
        let bytes = std::fs::read(src.join(rel)).expect("read");
        loc.store.put(&loc.child(rel), PutPayload::from(bytes)).await.unwrap_or_else(|e| panic!("upload {rel} to {}: {e}", loc.display));
    }
    files.len()
}

fn batch() -> arrow::record_batch::RecordBatch {
    let questions = vec!["What eats seeds?".to_string(), "Wo ist \"hier\"? ✓".to_string(), String::new()];
    text_batch(&[("question", questions)]).expect("batch")
}

#[test]
fn gcs_leaves_match_disk_and_a_dataset_reads_back() {
    let _env = env_lock();
    // The dataset is written by labflow into the folder the emulator is seeded from: the
    // emulator cannot take object_store's uploads (see tests/common/emulators.rs).
    let written = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let local = Location::open(written.path().to_str().expect("utf-8")).expect("local folder");
    let size = rt.block_on(write_parquet(&local, "generated/leaf/run.parquet", &batch())).expect("write locally");
    assert!(size > 0);

    let Some(gcs) = fake_gcs(&[("taxonomy", data("taxonomy")), ("docs", data("docs")), ("run", written.path().to_path_buf())]) else {
        return;
    };
    assert_leaves_match_disk(&gcs, &gcs_url("taxonomy"), &gcs_url("docs"));

    let _vars = gcs.set_process_env();
    let run = Location::open(&gcs_url("run")).expect("open gs://");
    let back = rt.block_on(read_parquet(&run, "generated/leaf/run.parquet")).expect("read back over gs://");
    assert_eq!(back, vec![batch()]);

    // Writes: fake-gcs-server 1.54.0 refuses object_store's XML-API PUT. Should a later version
    // take it, the round trip is checked; until then the failure must be an error naming the file.
    match rt.block_on(write_parquet(&run, "generated/leaf/again.parquet", &batch())) {
        Ok(_) => assert_eq!(rt.block_on(read_parquet(&run, "generated/leaf/again.parquet")).expect("read"), vec![batch()]),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("gs://labflow-test/run/generated/leaf/again.parquet"), "{msg}");
            eprintln!("NOTE: gs:// writes not exercised, the emulator refused the upload: {msg}");
        }
    }
}

#[test]
fn azure_upload_leaves_match_disk_and_a_dataset_round_trips() {
    let _env = env_lock();
    let Some(az) = azurite() else {
        return;
    };
    let _vars = az.set_process_env();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for (prefix, src) in [("taxonomy", data("taxonomy")), ("docs", data("docs"))] {
        let loc = Location::open(&azure_url(prefix)).expect("open az://");
        assert!(rt.block_on(upload(&loc, &src)) > 50, "{prefix}");
    }
    assert_leaves_match_disk(&az, &azure_url("taxonomy"), &azure_url("docs"));
    // The same container through the other spellings object_store parses.
    for scheme in ["azure", "abfs"] {
        let url = format!("{scheme}://labflow-test/taxonomy");
        let out = az.labflow(&["leaves", &url, "--docs", &azure_url("docs"), "--json"]);
        assert_eq!(out.status.code(), Some(0), "{url}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("JSON"), local_leaves(), "{url}");
    }

    let run = Location::open(&azure_url("runs/first")).expect("open az://");
    assert!(rt.block_on(write_parquet(&run, "generated/leaf/run.parquet", &batch())).expect("write over az://") > 0);
    assert_eq!(rt.block_on(read_parquet(&run, "generated/leaf/run.parquet")).expect("read back over az://"), vec![batch()]);
    let listed = rt.block_on(run.store.head(&run.child("generated/leaf/run.parquet"))).expect("head");
    assert_eq!(run.relative(&listed.location).as_deref(), Some("generated/leaf/run.parquet"));
}
