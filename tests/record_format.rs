//! The stored record format (`docs/storage.md`): legacy JSON records decode to
//! exactly what they did.

#![cfg(not(target_arch = "wasm32"))]

use fiber_funding::flow::record::ChannelRecord;
use serde::Deserialize;

#[derive(Deserialize)]
struct LegacyFixture {
    v1_from_idb_v1: Vec<Decoded>,
    v2: Vec<LegacyRecord>,
}

#[derive(Deserialize)]
struct Decoded {
    key: String,
    decoded: String,
}

#[derive(Deserialize)]
struct LegacyRecord {
    about: String,
    key: String,
    value: String,
    decoded: String,
}

#[derive(Deserialize)]
struct IdbV1 {
    channels: Vec<IdbV1Entry>,
}

#[derive(Deserialize)]
struct IdbV1Entry {
    key: String,
    value: String,
}

fn legacy() -> LegacyFixture {
    serde_json::from_str(include_str!("fixtures/records-legacy.json")).expect("the legacy fixture parses")
}

/// What the decoder of schema 2 made of each JSON record, field for field.
#[test]
fn every_legacy_json_record_decodes_to_what_it_did() {
    let fixture = legacy();
    assert_eq!(fixture.v2.len(), 4);
    for entry in &fixture.v2 {
        let record = ChannelRecord::decode(&entry.key, entry.value.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", entry.about));
        assert_eq!(format!("{record:?}"), entry.decoded, "{}", entry.about);
    }

    let idb: IdbV1 = serde_json::from_str(include_str!("fixtures/idb-v1.json")).unwrap();
    assert_eq!(fixture.v1_from_idb_v1.len(), 3);
    for expected in &fixture.v1_from_idb_v1 {
        let entry = idb.channels.iter().find(|e| e.key == expected.key).unwrap();
        let record = ChannelRecord::decode(&entry.key, entry.value.as_bytes()).unwrap();
        assert_eq!(record.schema_version, 1);
        assert_eq!(format!("{record:?}"), expected.decoded, "{}", entry.key);
    }
}
