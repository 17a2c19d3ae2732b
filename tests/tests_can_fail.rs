//! A lint over the test sources: no assertion that compares a value with itself
//! (an `assert_eq!` of `f(x)` against the same `f(x)` passes whatever `f` does).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The two top-level arguments of a macro call starting at `open` (the `(`).
fn two_args(src: &str, open: usize) -> Option<(String, String)> {
    let bytes = src.as_bytes();
    let mut depth = 0i32;
    let mut args = Vec::new();
    let mut start = open + 1;
    let mut i = open;
    let mut in_str = false;
    while i < bytes.len() {
        let c = bytes[i];
        if in_str {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        args.push(src[start..i].trim().to_string());
                        break;
                    }
                }
                b',' if depth == 1 => {
                    args.push(src[start..i].trim().to_string());
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    (args.len() >= 2).then(|| (args[0].clone(), args[1].clone()))
}

#[test]
fn no_assertion_compares_a_value_with_itself() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    // The library's and the command's (`cli/`, the other crate of the workspace).
    for dir in [
        "tests",
        "src",
        "benches",
        "cli/tests",
        "cli/src",
        "cli/benches",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut found = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).expect("read source");
        for mac in ["assert_eq!(", "prop_assert_eq!("] {
            let mut from = 0;
            while let Some(at) = src[from..].find(mac) {
                let open = from + at + mac.len() - 1;
                if let Some((a, b)) = two_args(&src, open) {
                    let norm = |s: &str| s.split_whitespace().collect::<String>();
                    if !a.is_empty() && norm(&a) == norm(&b) {
                        found.push(format!("{}: {mac}{a}, {b})", f.display()));
                    }
                }
                from = open + 1;
            }
        }
    }
    assert!(
        found.is_empty(),
        "assertions that cannot fail:\n{}",
        found.join("\n")
    );
}
