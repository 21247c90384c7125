//! A web chat widget message body: parsing never panics, whatever the bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = baton::web::parse_widget_message(data);
});
