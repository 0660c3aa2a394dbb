//! Markup is not content: HTML tags and entities, Markdown link targets, code-fence info strings
//! and list numbers are masked before words are taken, so a copy laid out in a table, in HTML or
//! as a numbered list gives the words of the original. Masking keeps every byte offset (a masked
//! byte becomes a space, or NUL where it must not split a word, e.g. an inline tag inside a
//! word), so word spans still point into the original text. Table borders, emphasis, headings
//! and quote markers are punctuation and already separate words.

/// NUL: a masked byte that vanishes without splitting a word (see `normalize`).
pub const HIDDEN: u8 = 0;

/// Longest tag, entity or link target masked, in bytes: longer runs are left as text.
const MAX_TAG: usize = 256;
const MAX_URL: usize = 512;

/// `text` with its markup masked, byte for byte; `None` when there is nothing to mask.
pub fn mask(text: &str) -> Option<String> {
    let b = text.as_bytes();
    if !b.iter().any(|c| matches!(c, b'<' | b'&' | b']' | b'`' | b'~') || c.is_ascii_digit()) {
        return None;
    }
    let mut out = b.to_vec();
    let mut changed = false;
    let mut i = 0;
    let mut line_start = true;
    while i < b.len() {
        let c = b[i];
        let step = match c {
            b'<' => tag(b, i).map(|(end, block)| {
                out[i..end].fill(if block { b' ' } else { HIDDEN });
                end - i
            }),
            b'&' => entity(b, i).map(|(end, decoded)| {
                let mut utf8 = [0u8; 4];
                let d = decoded.encode_utf8(&mut utf8).as_bytes();
                out[i..i + d.len()].copy_from_slice(d);
                out[i + d.len()..end].fill(HIDDEN);
                end - i
            }),
            b']' if b.get(i + 1) == Some(&b'(') => link_target(b, i + 1).map(|end| {
                out[i + 1..end].fill(b' ');
                end - i
            }),
            b'`' | b'~' if line_start => fence_info(b, i).map(|end| {
                out[i..end].fill(b' ');
                end - i
            }),
            b'0'..=b'9' if line_start => list_number(b, i).map(|end| {
                out[i..end].fill(b' ');
                end - i
            }),
            _ => None,
        };
        match step {
            Some(n) => {
                changed = true;
                line_start = false;
                i += n;
            }
            None => {
                line_start = c == b'\n' || (line_start && (c == b' ' || c == b'\t' || c == b'>'));
                i += 1;
            }
        }
    }
    // Only ASCII ranges that start and end on ASCII bytes were replaced, with ASCII or with a
    // whole character, so the bytes are still UTF-8.
    changed.then(|| String::from_utf8(out).unwrap_or_else(|_| text.to_string()))
}

/// Where the tokenization of `text` can still change when more text is appended, because a
/// construct is open at its end (`<b cla`, `&nbs`, `](http://ex`): the start of that construct.
pub fn open_construct(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let from = b.len().saturating_sub(MAX_URL);
    // The last opener (whose next byte, if any, can start the construct) with no closer after it.
    let open = |opener: &[u8], starts: fn(u8) -> bool, closer: u8, max: usize| {
        let at = (from..b.len())
            .rev()
            .find(|&i| b[i..].starts_with(opener) && b.get(i + opener.len()).is_none_or(|&c| starts(c)))?;
        (!b[at..].contains(&closer) && b.len() - at <= max).then_some(at)
    };
    [
        open(b"<", |c| c.is_ascii_alphabetic() || c == b'/' || c == b'!', b'>', MAX_TAG),
        open(b"&", |c| c.is_ascii_alphanumeric() || c == b'#', b';', 12),
        open(b"](", |c| !c.is_ascii_whitespace(), b')', MAX_URL),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// `<tag ...>`, `</tag>`, `<!-- -->`: its end, and whether it is a block element (a space) or
/// inline (hidden inside a word).
fn tag(b: &[u8], at: usize) -> Option<(usize, bool)> {
    let next = *b.get(at + 1)?;
    if !(next.is_ascii_alphabetic() || next == b'/' || next == b'!') {
        return None;
    }
    let end = b[at + 1..b.len().min(at + MAX_TAG)].iter().position(|&c| c == b'>' || c == b'<')? + at + 1;
    if b[end] != b'>' {
        return None;
    }
    let name: String = b[at + 1..end]
        .iter()
        .skip_while(|&&c| c == b'/')
        .take_while(|c| c.is_ascii_alphanumeric())
        .map(|&c| (c as char).to_ascii_lowercase())
        .collect();
    let inline = matches!(
        name.as_str(),
        "b" | "i"
            | "em"
            | "strong"
            | "span"
            | "a"
            | "u"
            | "s"
            | "code"
            | "mark"
            | "sub"
            | "sup"
            | "small"
            | "font"
            | "abbr"
            | "kbd"
            | "var"
            | "ins"
            | "del"
            | "strike"
            | "q"
            | "cite"
            | "wbr"
    );
    Some((end + 1, !inline))
}

/// `&name;`, `&#123;`, `&#x7B;`: its end and the character it stands for.
fn entity(b: &[u8], at: usize) -> Option<(usize, char)> {
    let end = b[at + 1..b.len().min(at + 12)].iter().position(|&c| c == b';')? + at + 1;
    let body = std::str::from_utf8(&b[at + 1..end]).ok()?;
    let decoded = if let Some(num) = body.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        char::from_u32(code)?
    } else {
        match body {
            "nbsp" | "ensp" | "emsp" | "thinsp" => ' ',
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            "shy" | "zwj" | "zwnj" => '\u{AD}',
            "mdash" => '—',
            "ndash" => '–',
            "hellip" => '…',
            "copy" => '©',
            "reg" => '®',
            "laquo" => '«',
            "raquo" => '»',
            "lsquo" | "rsquo" => '\'',
            "ldquo" | "rdquo" => '"',
            _ => return None,
        }
    };
    // The character must fit where the entity was.
    (decoded.len_utf8() <= end + 1 - at).then_some((end + 1, decoded))
}

/// `(target)` of a Markdown link or image, from its `(`: its end. A target has no whitespace.
fn link_target(b: &[u8], open: usize) -> Option<usize> {
    let close = b[open + 1..b.len().min(open + MAX_URL)]
        .iter()
        .position(|&c| c == b')' || c.is_ascii_whitespace())?
        + open
        + 1;
    (b[close] == b')' && close > open + 1).then_some(close + 1)
}

/// The info string of a code fence (```` ```rust ````), from the fence: the end of the line's
/// first word.
fn fence_info(b: &[u8], at: usize) -> Option<usize> {
    let fence = b[at];
    let ticks = b[at..].iter().take_while(|&&c| c == fence).count();
    if ticks < 3 {
        return None;
    }
    let info = b[at + ticks..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'+' || **c == b'-')
        .count();
    Some(at + ticks + info)
}

/// `12.` or `3)` starting a list item (followed by a space): its end.
fn list_number(b: &[u8], at: usize) -> Option<usize> {
    let digits = b[at..].iter().take(4).take_while(|c| c.is_ascii_digit()).count();
    let mark = *b.get(at + digits)?;
    let space = *b.get(at + digits + 1)?;
    ((mark == b'.' || mark == b')') && space == b' ').then_some(at + digits + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        mask(text).unwrap_or_else(|| text.to_string()).replace('\0', "")
    }

    #[test]
    fn tags_entities_links_fences_and_list_numbers_are_masked_in_place() {
        for (text, expect) in [
            ("<p>Four <b>sco</b>re</p>", "   Four score    "),
            ("four&nbsp;score &amp; seven", "four score & seven"),
            ("caf&#233; &#x41;", "café A"),
            ("see [the text](https://example.com/x) here", "see [the text]                        here"),
            ("```python\nx = 1\n```", "         \nx = 1\n   "),
            ("1. Four score\n2) and seven", "   Four score\n   and seven"),
        ] {
            let masked = mask(text).expect("something to mask");
            assert_eq!(masked.len(), text.len(), "{text:?}");
            assert_eq!(shown(text), expect, "{text:?}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in
            ["x < y and y > z", "AT&T; fish & chips", "f(x) = [a](b c)", "in 2014 she founded", "3 < 4"]
        {
            assert_eq!(shown(text), text, "{text:?}");
        }
        assert!(mask("plain words only").is_none());
    }

    #[test]
    fn an_open_construct_at_the_end_is_found() {
        assert_eq!(open_construct("four <span cla"), Some(5));
        assert_eq!(open_construct("four &nbs"), Some(5));
        assert_eq!(open_construct("four <b> score"), None);
        assert_eq!(open_construct("x](https://exa"), Some(1));
        assert_eq!(open_construct("a remark (as in"), None);
        assert_eq!(open_construct("x < y"), None);
    }
}
