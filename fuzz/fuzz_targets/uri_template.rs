//! Fuzzes URI template matching, which runs on every `resources/read` of a templated URI:
//! any template against any URI must answer, quickly, without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway::catalog::uri_template::UriTemplate;

/// Longer inputs are skipped, so that a slow match shows up as a hang on an input of a
/// realistic size rather than as the cost of a huge one.
const MAX_INPUT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    // The template is the first line, the URI the rest.
    let text = String::from_utf8_lossy(data);
    let (template, uri) = text.split_once('\n').unwrap_or((&text, ""));
    let compiled = UriTemplate::parse(template);
    let matched = compiled.matches(uri);
    assert_eq!(UriTemplate::parse(template), compiled);
    if !template.contains('{') {
        // Without expressions a template is a literal URI.
        assert!(
            compiled.matches(template),
            "{template:?} does not match itself"
        );
        assert_eq!(matched, uri == template, "{template:?} vs {uri:?}");
    }
});
