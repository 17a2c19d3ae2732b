use super::*;
use proptest::prelude::*;

fn tenant() -> impl Strategy<Value = TenantId> {
    "[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}".prop_map(|s| TenantId::new(&s).unwrap())
}

#[test]
fn shapes() {
    let k = Keys::default();
    let t = TenantId::new("acme").unwrap();
    assert_eq!(k.session(&t, "abc").as_str(), "tg:session:{acme}:abc");
    assert_eq!(k.query(&t, "ff00").as_str(), "tg:query:{acme}:ff00");
    assert_eq!(k.ai(&t, "gpt-4o", "ff").as_str(), "tg:ai:{acme}:gpt-4o:ff");
    assert_eq!(
        k.session_index(&t, "u1").as_str(),
        "tg:session-index:{acme}:u1"
    );
    assert_eq!(k.tenant_pattern(&t).as_str(), "tg:*:{acme}*");
    assert_eq!(
        k.kind_pattern(KeyKind::Session, &t).as_str(),
        "tg:session:{acme}:*"
    );
    let k2 = Keys::new(KeyPrefix::new("app:v2").unwrap());
    assert_eq!(k2.session(&t, "x").as_str(), "app:v2:session:{acme}:x");
    assert!(k2.tenant_pattern(&t).matches("app:v2:session:{acme}:x"));
}

#[test]
fn known_slots() {
    // Values from `CLUSTER KEYSLOT` on Redis 7.
    assert_eq!(hash_slot(b"foo"), 12182);
    assert_eq!(hash_slot(b"bar"), 5061);
    // An empty tag does not count: the whole key is hashed (values from CLUSTER KEYSLOT).
    assert_eq!(hash_slot(b"{}foo"), 9500);
    assert_ne!(hash_slot(b"{}foo"), hash_slot(b"foo"));
    // Only the first `{...}` counts, and it is empty here: the whole key.
    assert_eq!(hash_slot(b"a{}{b}"), 15033);
    assert_ne!(hash_slot(b"a{}{b}"), hash_slot(b"b"));
    assert_eq!(hash_slot(b"x{acme}y"), hash_slot(b"acme"));
}

#[test]
fn fast_path_agrees_with_the_escape_set() {
    for b in 0u8..=0x7f {
        let c = (b as char).to_string();
        let escaped = utf8_percent_encode(&c, ESCAPE).to_string() != c;
        assert_eq!(needs_escape(b), escaped, "byte {b:#x}");
    }
}

proptest! {
    #[test]
    fn escaper_matches_percent_encoding(c in any::<String>()) {
        let mut out = String::new();
        push_escaped(&mut out, &c);
        prop_assert_eq!(&out, &utf8_percent_encode(&c, ESCAPE).to_string());
        prop_assert_eq!(escape(&c), out);
    }
}

#[test]
fn escape_examples() {
    // Found by mutation testing: `escape` itself was only checked by its doctest.
    assert_eq!(escape("GET /users/{id}"), "GET /users/%7Bid%7D");
    assert_eq!(escape("a:b*c?[d]\\%"), "a%3Ab%2Ac%3F%5Bd%5D%5C%25");
    assert_eq!(escape("plain-id_1.2"), "plain-id_1.2");
    assert_eq!(escape(""), "");
}

#[test]
fn glob() {
    assert!(glob_match(b"a*", b"a"));
    assert!(glob_match(b"a*c", b"abbbc"));
    assert!(!glob_match(b"a*c", b"abbb"));
    assert!(glob_match(b"*", b""));
    assert!(glob_match(b"a?c", b"abc"));
    assert!(!glob_match(b"abc", b"abcd"));
    // Found by mutation testing: a leading `*`, and backtracking to a `*` when the
    // subject holds a literal `*` where the rest must start matching.
    assert!(glob_match(b"*", b"abc"));
    assert!(glob_match(b"*c", b"abc"));
    assert!(!glob_match(b"*d", b"abc"));
    assert!(glob_match(b"*?c", b"a*c"));
}

proptest! {
    #[test]
    fn the_kind_of_a_key_is_read_back(
        t in tenant(),
        prefix in "[a-z][a-z0-9:._-]{0,20}[a-z0-9]",
        parts in proptest::collection::vec(any::<String>(), 0..4),
    ) {
        // Whatever the prefix (it may contain `:` and kind names) and components, the
        // memory backend classifies a key by the kind it was made with.
        let Ok(prefix) = KeyPrefix::new(&prefix) else { return Ok(()) };
        let keys = Keys::new(prefix);
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        for kind in [
            KeyKind::RateLimit, KeyKind::Session, KeyKind::SessionIndex, KeyKind::Query,
            KeyKind::Ai, KeyKind::Cache, KeyKind::Lock, KeyKind::CacheGen,
        ] {
            prop_assert_eq!(KeyKind::of(keys.key(kind, &t, &refs).as_str()), Some(kind));
        }
    }
}

proptest! {
    #[test]
    fn components_cannot_escape_their_tenant(
        t in tenant(),
        other in tenant(),
        parts in proptest::collection::vec(any::<String>(), 1..4),
    ) {
        let keys = Keys::default();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        for kind in [KeyKind::RateLimit, KeyKind::Session, KeyKind::Cache, KeyKind::Ai, KeyKind::Query] {
            let key = keys.key(kind, &t, &refs);
            let s = key.as_str();
            let head = format!("tg:{}:{{{}}}:", kind.as_str(), t);
            // Stays in the tenant's namespace and slot.
            prop_assert!(s.starts_with(&head));
            prop_assert_eq!(key.slot(), hash_slot(t.as_str().as_bytes()));
            // Exactly one brace pair, one segment per component: nothing injected.
            let tail = &s[head.len()..];
            prop_assert_eq!(tail.split(':').count(), refs.len());
            for bad in ['{', '}', '*', '?', '[', ']', '\\', '\n', '\r', '\0'] {
                prop_assert!(!tail.contains(bad), "{:?} in {:?}", bad, tail);
            }
            prop_assert!(keys.tenant_pattern(&t).matches(s));
            prop_assert!(keys.kind_pattern(kind, &t).matches(s));
            if other != t {
                prop_assert!(!keys.tenant_pattern(&other).matches(s));
            }
        }
    }

    #[test]
    fn patterns_cannot_be_widened(
        t in tenant(),
        cat in any::<String>(),
        other_cat in any::<String>(),
        id in any::<String>(),
    ) {
        let keys = Keys::default();
        let p = keys.prefix_pattern(KeyKind::Cache, &t, &[&cat]);
        // The only glob is the trailing `*`.
        let body = &p.as_str()[..p.as_str().len() - 1];
        for bad in ['*', '?', '[', ']', '\\'] {
            prop_assert!(!body.contains(bad));
        }
        prop_assert_eq!(p.slot(), hash_slot(t.as_str().as_bytes()));
        prop_assert!(p.matches(keys.cache(&t, &cat, &id).as_str()));
        if other_cat != cat {
            prop_assert!(!p.matches(keys.cache(&t, &other_cat, &id).as_str()));
        }
    }
}
