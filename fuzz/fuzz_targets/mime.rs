//! Raw inbound mail: parsing, then what Baton does with a parsed mail (sanitizing its HTML,
//! trimming quoted history, the subject key), never panics whatever the bytes.
#![no_main]
use baton::channels::email::{parse, thread, trim};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(mail) = parse::parse_with_limit(data, 1024 * 1024) {
        if let Some(html) = &mail.html {
            let _ = parse::sanitize_html(html);
        }
        if let Some(text) = &mail.text {
            let _ = trim::trim_reply(text);
        }
        if let Some(subject) = &mail.subject {
            let _ = thread::subject_key(subject);
        }
    }
});
