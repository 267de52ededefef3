//! Masking company tax ids in facts and details.

/// Labels after which a long run of digits is a company tax id (INN, TIN, VAT, 税号 …).
pub(super) const TAX_LABELS: [&str; 10] = [
    "inn",
    "инн",
    "tax",
    "tin",
    "vat",
    "kpp",
    "кпп",
    "税号",
    "纳税人识别号",
    "统一社会信用代码",
];

/// Masks every alphanumeric run of at least 8 characters (6 of them digits) that follows a
/// tax-id label within a few characters: `INN 7707083893` → `INN ••••••••93`.
pub fn mask_tax_ids(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let lower: Vec<char> = chars
        .iter()
        .map(|c| c.to_lowercase().next().unwrap_or(*c))
        .collect();
    let mut masked = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        let label = TAX_LABELS.iter().find_map(|l| {
            let l: Vec<char> = l.chars().collect();
            let fits = lower.get(i..i + l.len()) == Some(&l[..]);
            let ascii_word = l[0].is_alphabetic();
            let boundary_before = i == 0 || !ascii_word || !lower[i - 1].is_alphanumeric();
            fits.then_some(l.len()).filter(|_| boundary_before)
        });
        let Some(len) = label else {
            i += 1;
            continue;
        };
        // Skip a short gap ("INN: ", "tax id ", "税号：") to the value.
        let mut j = i + len;
        let gap_end = (j + 16).min(chars.len());
        while j < gap_end && !chars[j].is_ascii_digit() {
            j += 1;
        }
        // Back up to the start of an alphanumeric token the digit is in (USCC starts with digits
        // or letters).
        while j > i + len && chars[j - 1].is_ascii_alphanumeric() && j < chars.len() {
            j -= 1;
        }
        let start = j;
        let mut end = start;
        while end < chars.len() && chars[end].is_ascii_alphanumeric() {
            end += 1;
        }
        let token = &chars[start..end];
        let digits = token.iter().filter(|c| c.is_ascii_digit()).count();
        if token.len() >= 8 && digits >= 6 {
            for c in &mut masked[start..end - 2] {
                *c = '•';
            }
            i = end;
        } else {
            i += len;
        }
    }
    masked.into_iter().collect()
}
