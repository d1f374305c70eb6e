//! BOLT 8's published test vectors (tests/vectors/bolt8.rs), natively; the
//! browser suite runs the same file in Chromium.

#[path = "vectors/bolt8.rs"]
mod bolt8;

#[test]
fn every_bolt8_test_vector_passes() {
    let passed = bolt8::all();
    println!("BOLT 8 vectors passed natively: {}", passed.len());
    for name in &passed {
        println!("  {name}");
    }
    // 5 initiator, 10 responder, 1 message test.
    assert_eq!(passed.len(), 16);
}
