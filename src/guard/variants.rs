//! Personal data in any format: the variants of a `term` entry, derived from what it is (given
//! as `"type"` in the forget list, or detected from its text) and indexed like aliases.
//!
//! - person: "Last, First", initials of the given and middle names ("M. Okafor-Lind",
//!   "M.A. Lind"), a hyphenated surname split, joined or either part, the middle name dropped;
//!   never the given name or the surname alone (too many other people share one).
//! - e-mail: spelled out or obfuscated ("name at domain dot tld", "[at]", "(dot)"), any case.
//! - phone: its digits, whatever separates or groups them, with or without the country code
//!   or trunk prefix (`joined` keys: any run of words whose letters and digits, concatenated,
//!   are the key).
//! - id: its letters and digits without separators, whatever the case (`joined` keys).
use crate::forget::TermType;

/// What a term's variants are.
#[derive(Debug, Default, PartialEq)]
pub struct Variants {
    /// Phrases matched as word sequences, like aliases.
    pub phrases: Vec<String>,
    /// Strings whose normalized words, concatenated, are matched across any word grouping.
    pub joined: Vec<String>,
}

/// The type a term's text looks like, when the forget list does not say.
pub fn detect(text: &str) -> Option<TermType> {
    let t = text.trim();
    let digits = t.chars().filter(char::is_ascii_digit).count();
    if let Some((local, domain)) = t.split_once('@') {
        if !local.is_empty() && domain.contains('.') && !t.contains(char::is_whitespace) {
            return Some(TermType::Email);
        }
    }
    if (7..=15).contains(&digits) && t.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c)) {
        return Some(TermType::Phone);
    }
    if digits > 0
        && t.split_whitespace().count() <= 3
        && t.chars().all(|c| c.is_alphanumeric() || " -_/.#".contains(c))
    {
        return Some(TermType::Id);
    }
    let words: Vec<&str> = t.split_whitespace().collect();
    let name_word = |w: &&str| {
        w.chars().next().is_some_and(char::is_uppercase)
            && w.chars().all(|c| c.is_alphabetic() || "-'.".contains(c))
    };
    if (2..=5).contains(&words.len()) && words.iter().all(name_word) {
        return Some(TermType::Person);
    }
    None
}

/// The variants of a term of type `ty` (none for an untyped term).
pub fn of(text: &str, ty: Option<TermType>) -> Variants {
    match ty {
        Some(TermType::Person) => Variants { phrases: person(text), joined: Vec::new() },
        Some(TermType::Email) => Variants { phrases: email(text), joined: Vec::new() },
        Some(TermType::Phone) => Variants { phrases: Vec::new(), joined: phone(text) },
        Some(TermType::Id) => Variants { phrases: Vec::new(), joined: vec![text.to_string()] },
        None => Variants::default(),
    }
}

fn initial(name: &str) -> String {
    name.chars().next().map(|c| format!("{c}.")).unwrap_or_default()
}

fn person(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [given, middles @ .., surname] = words.as_slice() else { return Vec::new() };
    let mut surnames = vec![surname.to_string()];
    if surname.contains('-') {
        surnames.push(surname.replace('-', ""));
        surnames.extend(surname.split('-').filter(|p| !p.is_empty()).map(String::from));
    }
    let givens = [given.to_string(), initial(given)];
    let mut middle_forms = vec![String::new()];
    if !middles.is_empty() {
        middle_forms.push(middles.join(" "));
        middle_forms.push(middles.iter().map(|m| initial(m)).collect::<Vec<_>>().join(""));
        middle_forms.push(middles.iter().map(|m| initial(m)).collect::<Vec<_>>().join(" "));
    }
    let mut out = Vec::new();
    for (k, s) in surnames.iter().enumerate() {
        // One part of a hyphenated surname only with a middle name or initial besides the
        // given one: "Adaeze Okafor" is too often somebody else (a near-miss of the evaluation).
        let part = k >= 2;
        for g in &givens {
            for m in middle_forms.iter().filter(|m| !(part && m.is_empty())) {
                // Initials run together ("M.A.") like separate ones ("M. A.").
                let joined_initials = format!("{g}{m}");
                for first in [format!("{g} {m}"), joined_initials] {
                    let first = first.trim().to_string();
                    out.push(format!("{first} {s}"));
                    out.push(format!("{s}, {first}"));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn email(text: &str) -> Vec<String> {
    let Some((local, domain)) = text.trim().split_once('@') else { return Vec::new() };
    let locals: Vec<&str> = local.split(['.', '_', '-', '+']).filter(|p| !p.is_empty()).collect();
    let domains: Vec<&str> = domain.split('.').filter(|p| !p.is_empty()).collect();
    let mut out = Vec::new();
    for local_join in [" ", " dot "] {
        for at in [" ", " at "] {
            for domain_join in [" ", " dot "] {
                out.push(format!("{}{at}{}", locals.join(local_join), domains.join(domain_join)));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The digits of a phone number, without and with what may stand before the national number.
fn phone(text: &str) -> Vec<String> {
    let t = text.trim();
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    let international = t.starts_with('+') || digits.starts_with("00");
    let number = if t.starts_with('+') { digits.as_str() } else { digits.trim_start_matches("00") };
    let mut out = vec![digits.clone()];
    if international {
        out.push(format!("00{number}"));
        // The country code is 1 to 3 digits; the national number at least 7.
        for cc in 1..=3 {
            if let Some(national) = number.get(cc..).filter(|n| n.len() >= 7) {
                out.push(national.to_string());
                out.push(format!("0{national}"));
            }
        }
    } else if let Some(national) = digits.strip_prefix('0').filter(|n| n.len() >= 7) {
        out.push(national.to_string());
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_detected_from_the_text() {
        assert_eq!(detect("Adaeze Okafor-Brennan"), Some(TermType::Person));
        assert_eq!(detect("hvoss@example.net"), Some(TermType::Email));
        assert_eq!(detect("+1 555 013 4477"), Some(TermType::Phone));
        assert_eq!(detect("(555) 013-4477"), Some(TermType::Phone));
        assert_eq!(detect("EMP-40917-KX"), Some(TermType::Id));
        assert_eq!(detect("MRN 88-31-207"), Some(TermType::Id));
        assert_eq!(detect("project nightjar"), None);
    }

    #[test]
    fn a_person_gets_initials_reversed_order_and_surname_parts_but_never_one_name() {
        let v = person("Marisol Ana Okafor-Lind");
        for expected in
            ["M. Okafor-Lind", "M.A. Lind", "Okafor-Lind, Marisol", "Marisol OkaforLind", "Marisol Ana Lind"]
        {
            assert!(v.contains(&expected.to_string()), "{expected}: {v:?}");
        }
        for name in ["Marisol", "Okafor-Lind", "Lind", "Ana", "Marisol Lind", "M. Lind"] {
            assert!(!v.contains(&name.to_string()), "{name} alone");
        }
    }

    #[test]
    fn an_email_is_spelled_out_and_a_phone_number_loses_its_country_code() {
        let v = email("first.last@example.com");
        assert!(v.contains(&"first dot last at example dot com".to_string()), "{v:?}");
        assert!(v.contains(&"first last at example com".to_string()), "{v:?}");
        let p = phone("+1 555 013 4477");
        for expected in ["15550134477", "5550134477", "05550134477", "0015550134477"] {
            assert!(p.contains(&expected.to_string()), "{expected}: {p:?}");
        }
        assert!(phone("020 7946 0123").contains(&"2079460123".to_string()));
    }
}
