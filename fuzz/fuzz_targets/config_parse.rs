//! Fuzzes config loading (JSON or YAML text through expansion and validation): any text must
//! give either a config whose backends are named, sorted and unique, or at least one problem.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway::config::{self, Format};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let format = if first & 1 == 0 {
        Format::Yaml
    } else {
        Format::Json
    };
    let text = String::from_utf8_lossy(rest);
    match config::parse(&text, "fuzz", format, None, &|_: &str| None) {
        Ok(config) => {
            for backend in &config.backends {
                assert!(!backend.name.is_empty(), "unnamed backend from {text:?}");
            }
            for pair in config.backends.windows(2) {
                assert!(
                    pair[0].name < pair[1].name,
                    "backends not sorted or repeated: {:?} {:?}",
                    pair[0].name,
                    pair[1].name
                );
            }
        }
        Err(error) => {
            assert!(
                !error.problems.is_empty(),
                "an error without problems from {text:?}"
            );
            assert_eq!(error.source, "fuzz");
        }
    }
});
