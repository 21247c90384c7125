//! A Twilio SMS webhook form body: parsing never panics, whatever the bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = baton::channels::twilio::parse(data);
});
