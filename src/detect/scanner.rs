//! The one-pass scanner behind [`Engine::scan_text`] and [`Engine::scan_value`].

use super::validate::{self, chinese_numeral, is_cn_numeral, is_surname, COMPOUND_SURNAMES};
use super::{AgeEvidence, Engine, Hit, Role, Scanner, Trig};
use crate::finding::Category;
use chrono::{Datelike, NaiveDate};

/// Context window before a candidate (bytes; ~16 CJK characters), same line.
const WIN_BEFORE: usize = 48;
/// Context window after a candidate.
const WIN_AFTER: usize = 18;

thread_local! {
    /// Scratch vectors of [`Engine::scan_impl`], kept between calls: table
    /// cells are short, and two allocations per cell were a visible share of
    /// a database scan.
    static SCRATCH_MS: std::cell::Cell<Vec<M>> = const { std::cell::Cell::new(Vec::new()) };
    static SCRATCH_TOKENS: std::cell::Cell<Vec<(u32, u32)>> = const { std::cell::Cell::new(Vec::new()) };
    static SCRATCH_ENDS: std::cell::Cell<Vec<u64>> = const { std::cell::Cell::new(Vec::new()) };
    static SCRATCH_BLOCKS: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Bytes of text per entry of [`St::ms_block`] (longer than any keyword).
const MS_BLOCK: usize = 1024;

/// One aho-corasick match.
#[derive(Debug, Clone, Copy)]
struct M {
    start: u32,
    end: u32,
    pid: u32,
}

struct St<'a> {
    text: &'a str,
    b: &'a [u8],
    ms: Vec<M>,
    hints: &'a [Category],
    /// Bit r set when a context word of rule r (r < 128) occurs in the text.
    ctx_rules: u128,
    /// Bit p set when a context word (of any rule) ends at byte p: the
    /// "is a label right before this number" tests answer most candidates
    /// (clock fields, counts) with one bit instead of a binary search of
    /// `ms`, which in a 4 MiB chunk is ~17 cache-missing steps.
    ctx_ends: Vec<u64>,
    /// `ms_block[k]`: the index of the first match starting at or after
    /// byte `k * MS_BLOCK` (long texts only; empty for short ones): the
    /// searches of `ms` by position look at one or two blocks, not at
    /// every match of a 4 MiB chunk.
    ms_block: Vec<u32>,
}

impl St<'_> {
    /// Whether any context word of `rule` occurs in the text (cheap pre-check).
    #[inline]
    fn has_ctx(&self, rule: u16) -> bool {
        rule >= 127 || self.ctx_rules & (1u128 << rule) != 0
    }

    /// First index of `ms` whose match satisfies `!before(m)`, where
    /// `before` holds for exactly the matches that end before byte `p`
    /// or start before it (matches do not overlap, so both orders agree).
    #[inline]
    fn ms_partition(&self, p: usize, before: impl Fn(&M) -> bool) -> usize {
        if self.ms_block.is_empty() {
            return self.ms.partition_point(before);
        }
        let k = p / MS_BLOCK;
        let last = self.ms_block.len() - 1;
        let lo = self.ms_block[k.saturating_sub(1).min(last)] as usize;
        let hi = if k + 1 <= last {
            self.ms_block[k + 1] as usize
        } else {
            self.ms.len()
        };
        lo + self.ms[lo..hi].partition_point(before)
    }

    /// Build `ms_block` once every keyword match is in `ms`, before any
    /// candidate is classified. Short texts (cells) search `ms` whole and
    /// leave the scratch alone.
    #[inline]
    fn index_blocks(&mut self) {
        if self.b.len() >= 4 * MS_BLOCK {
            self.build_blocks();
        }
    }

    fn build_blocks(&mut self) {
        let mut blocks = SCRATCH_BLOCKS.with(std::cell::Cell::take);
        blocks.clear();
        let mut i = 0;
        for k in 0..=self.b.len() / MS_BLOCK {
            while i < self.ms.len() && (self.ms[i].start as usize) < k * MS_BLOCK {
                i += 1;
            }
            blocks.push(i as u32);
        }
        self.ms_block = blocks;
    }

    /// Whether a context word of some rule ends at byte `p`.
    #[inline]
    fn ctx_ends_at(&self, p: usize) -> bool {
        self.ctx_ends[p / 64] & (1 << (p % 64)) != 0
    }

    /// Whether a context word of some rule ends at a byte in `lo..=hi`.
    #[inline]
    fn ctx_ends_in(&self, lo: usize, hi: usize) -> bool {
        let (wl, wh) = (lo / 64, hi / 64);
        let low = u64::MAX << (lo % 64);
        let high = u64::MAX >> (63 - hi % 64);
        if wl == wh {
            self.ctx_ends[wl] & low & high != 0
        } else {
            self.ctx_ends[wl] & low != 0
                || self.ctx_ends[wl + 1..wh].iter().any(|&w| w != 0)
                || self.ctx_ends[wh] & high != 0
        }
    }
}

/// ASCII letters and digits, by byte: one load instead of three range tests
/// (the byte loop asks this of every ASCII byte of the text).
static ALNUM: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    t
};

#[inline]
fn is_alnum(c: u8) -> bool {
    ALNUM[c as usize]
}

/// First index `>= i` whose byte is not an ASCII digit or lowercase letter
/// (`b.len()` when none): 8 bytes per step (SWAR range tests, exact per byte).
#[inline]
fn skip_digits_lower(b: &[u8], mut i: usize) -> usize {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    // High bit of each byte set when lo < x < hi (x < 0x80; lo, hi <= 128).
    let between = |x: u64, lo: u64, hi: u64| {
        let x7 = x & (L * 127);
        (L * (127 + hi) - x7) & !x & (x7 + L * (127 - lo)) & H
    };
    while i + 8 <= b.len() {
        // One unaligned load (indexing byte by byte made eight bounds-checked loads).
        let mut word = [0u8; 8];
        word.copy_from_slice(&b[i..i + 8]);
        let w = u64::from_le_bytes(word);
        let ok = between(w, b'0' as u64 - 1, b'9' as u64 + 1)
            | between(w, b'a' as u64 - 1, b'z' as u64 + 1);
        let bad = !ok & H;
        if bad != 0 {
            return i + (bad.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i].is_ascii_lowercase()) {
        i += 1;
    }
    i
}

/// Classes of the 64 bytes of a block, bit k for byte k.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Masks {
    /// ASCII letters and digits.
    an: u64,
    /// ASCII uppercase letters.
    up: u64,
    /// ASCII lowercase letters.
    lo: u64,
    /// Lead bytes of 3-byte UTF-8 characters (0xE0..=0xEF: CJK and more).
    l3: u64,
}

/// The code point (low 16 bits) of the 3-byte character whose lead byte is
/// at `i`; 0 when the text ends before its last byte.
#[inline(always)]
fn cp3(b: &[u8], i: usize) -> usize {
    match (b.get(i + 1), b.get(i + 2)) {
        (Some(&c2), Some(&c3)) => {
            ((b[i] & 0x0F) as usize) << 12 | ((c2 & 0x3F) as usize) << 6 | (c3 & 0x3F) as usize
        }
        _ => 0,
    }
}

/// [`Masks`] of a block: SSE2 (every x86-64 has it), 16 bytes per compare.
#[cfg(target_arch = "x86_64")]
#[inline]
fn block_masks(blk: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86-64 baseline; the loads are unaligned
    // loads of 16 bytes within the 64-byte array.
    unsafe {
        let range = |x: __m128i, lo: u8, hi: u8| {
            // Signed compares: bytes >= 0x80 are negative and never in an ASCII range.
            _mm_and_si128(
                _mm_cmpgt_epi8(x, _mm_set1_epi8(lo as i8 - 1)),
                _mm_cmplt_epi8(x, _mm_set1_epi8(hi as i8 + 1)),
            )
        };
        let (mut dg, mut up, mut lo, mut l3) = (0u64, 0u64, 0u64, 0u64);
        for q in 0..4 {
            let x = _mm_loadu_si128(blk.as_ptr().add(16 * q) as *const __m128i);
            let sh = 16 * q;
            dg |= (_mm_movemask_epi8(range(x, b'0', b'9')) as u16 as u64) << sh;
            up |= (_mm_movemask_epi8(range(x, b'A', b'Z')) as u16 as u64) << sh;
            lo |= (_mm_movemask_epi8(range(x, b'a', b'z')) as u16 as u64) << sh;
            let hi4 = _mm_and_si128(x, _mm_set1_epi8(0xF0u8 as i8));
            l3 |= (_mm_movemask_epi8(_mm_cmpeq_epi8(hi4, _mm_set1_epi8(0xE0u8 as i8))) as u16
                as u64)
                << sh;
        }
        Masks {
            an: dg | up | lo,
            up,
            lo,
            l3,
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn block_masks(blk: &[u8; 64]) -> Masks {
    block_masks_bytes(blk)
}

/// [`block_masks`] a byte at a time (other targets; the SIMD version's reference).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn block_masks_bytes(blk: &[u8; 64]) -> Masks {
    let mut m = Masks {
        an: 0,
        up: 0,
        lo: 0,
        l3: 0,
    };
    for (k, &c) in blk.iter().enumerate() {
        let bit = 1u64 << k;
        if c.is_ascii_alphanumeric() {
            m.an |= bit;
        }
        if c.is_ascii_uppercase() {
            m.up |= bit;
        }
        if c.is_ascii_lowercase() {
            m.lo |= bit;
        }
        if c & 0xF0 == 0xE0 {
            m.l3 |= bit;
        }
    }
    m
}

/// CJK unified ideograph.
pub(super) fn is_cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3400}'..='\u{4dbf}').contains(&c)
}

fn char_at(t: &str, p: usize) -> Option<char> {
    t.get(p..).and_then(|s| s.chars().next())
}

fn char_before(t: &str, p: usize) -> Option<char> {
    t.get(..p).and_then(|s| s.chars().next_back())
}

/// Characters that end a person name / cannot be a given-name character.
const NAME_STOP: &str = "的了在是和与及同已今年岁男女性电手联出生住就读现等说于被有去来到从把对向也都还又才要会能将请您你我他她们这那个位名号班级校先老师父母爸妈已未无和或但";

/// Whether `c` is one of the characters of `set` (a short literal): a
/// loop over its characters; `str::contains` ran a substring search per call.
#[inline]
pub(super) fn one_of(set: &str, c: char) -> bool {
    set.chars().any(|x| x == c)
}

/// Whether `c` is in [`NAME_STOP`] (binary search of its sorted characters).
fn name_stop(c: char) -> bool {
    static SORTED: std::sync::LazyLock<Vec<char>> = std::sync::LazyLock::new(|| {
        let mut v: Vec<char> = NAME_STOP.chars().collect();
        v.sort_unstable();
        v.dedup();
        v
    });
    SORTED.binary_search(&c).is_ok()
}

pub(super) fn starts_with_surname(v: &str) -> bool {
    COMPOUND_SURNAMES.iter().any(|s| v.starts_with(s)) || v.chars().next().is_some_and(is_surname)
}

/// The digit counts [`Engine::classify`] can make an identifier, date or
/// age of (4-7, 9, 14 and 20+ never are); `digit_run` skips lone runs of
/// other lengths without setting up the classification.
const fn id_length(n: usize) -> bool {
    matches!(n, 1..=3 | 8 | 10..=13 | 15..=19)
}

/// The character at byte `j` of `text` (ASCII lowercased) and its length;
/// `None` at the end or off a character boundary.
#[inline(always)]
fn lower_char_at(b: &[u8], text: &str, j: usize) -> Option<(u32, usize)> {
    let d = *b.get(j)?;
    if d < 0x80 {
        Some((d.to_ascii_lowercase() as u32, 1))
    } else if (0xE0..0xF0).contains(&d) && j + 2 < b.len() {
        let c =
            ((d & 0x0F) as u32) << 12 | ((b[j + 1] & 0x3F) as u32) << 6 | (b[j + 2] & 0x3F) as u32;
        Some((c, 3))
    } else {
        text.get(j..)?
            .chars()
            .next()
            .map(|c| (c as u32, c.len_utf8()))
    }
}

/// The leftmost-longest keyword starting exactly at `at`: (start, end,
/// pattern). The walk of [`aho_corasick`]'s own anchored search, on the DFA's
/// table directly (a generic `find` call cost ~600 instructions of setup and
/// dispatch per position tried, several times the walk itself).
#[inline]
pub(super) fn anchored_at(
    dfa: &aho_corasick::dfa::DFA,
    b: &[u8],
    at: usize,
) -> Option<(usize, usize, usize)> {
    use aho_corasick::automaton::Automaton;
    use aho_corasick::Anchored;
    let mut sid = dfa.start_state(Anchored::Yes).ok()?;
    let mut mat = None;
    for (i, &c) in b.iter().enumerate().skip(at) {
        sid = dfa.next_state(Anchored::Yes, sid, c);
        if dfa.is_special(sid) {
            if dfa.is_dead(sid) {
                break;
            }
            if dfa.is_match(sid) {
                let pid = dfa.match_pattern(sid, 0);
                let start = i + 1 - dfa.pattern_len(pid);
                // Match states also carry matches reached through failure
                // transitions, which start later: not anchored at `at`.
                if start == at {
                    mat = Some((start, i + 1, pid.as_usize()));
                }
            }
        }
    }
    mat
}

/// A whole value that looks like a Chinese name (2–4 CJK chars, or a
/// minority name with a middle dot).
pub(super) fn is_name_value(v: &str) -> bool {
    // One pass; most values of a name column that are not names fail at once.
    let (mut n, mut dot) = (0, false);
    for c in v.chars() {
        if c == '·' {
            dot = true;
        } else if !(is_cjk(c) || c == '•') {
            return false;
        }
        n += 1;
    }
    (2..=4).contains(&n) || dot && (3..=12).contains(&n)
}

/// Values of a name column that are not names: placeholders (未知, 不详,
/// 暂无, 测试) and words made of characters that never form a given name.
pub(super) fn not_a_name(v: &str) -> bool {
    is_name_placeholder(v)
        || v.chars().any(|c| {
            "的了在是和与及今年岁男女性电手联出生住就读现等说于被有去来到从把对向也都还又才要会能将请您你我他她们这那个位号班级校未无或但不详测试知暂填写空密匿"
                .contains(c)
        })
}

/// Placeholders and role words in a name column (未知, 暂无, 管理员), even
/// when they start with a surname character (管, 游).
pub(super) fn is_name_placeholder(v: &str) -> bool {
    const PLACEHOLDERS: [&str; 22] = [
        "未知",
        "不详",
        "暂无",
        "无名",
        "测试",
        "test",
        "匿名",
        "其他",
        "空",
        "保密",
        "未填",
        "未填写",
        "无",
        "待定",
        "家长",
        "监护人",
        "管理员",
        "系统",
        "客服",
        "游客",
        "用户",
        "本人",
    ];
    PLACEHOLDERS.contains(&v)
}

/// A romanized name in a name column: two or three capitalized words of
/// letters (Zhang Xiaoming, ZHANG Wei, Ouyang Mingyue).
pub(super) fn is_pinyin_name(v: &str) -> bool {
    if v.len() > 32 || !v.as_bytes().first().is_some_and(u8::is_ascii_uppercase) {
        return false;
    }
    let words: Vec<&str> = v.split(' ').filter(|w| !w.is_empty()).collect();
    (2..=3).contains(&words.len())
        && v.len() <= 32
        && words.iter().all(|w| {
            let b = w.as_bytes();
            (2..=12).contains(&b.len())
                && b[0].is_ascii_uppercase()
                && b[1..].iter().all(u8::is_ascii_alphabetic)
        })
        && !matches!(
            v.to_ascii_lowercase().as_str(),
            "not available" | "not applicable" | "no name" | "test user" | "unknown user"
        )
}

/// Staff or education-history words around a school name on its line.
fn adult_school_context(t: &str, start: usize, end: usize) -> bool {
    const STAFF: [&str; 14] = [
        "老师",
        "教师",
        "校长",
        "班主任",
        "任教",
        "执教",
        "教职工",
        "职工",
        "员工",
        "工作",
        "毕业",
        "教研",
        "teacher",
        "staff",
    ];
    let mut lo = start.saturating_sub(160);
    while !t.is_char_boundary(lo) {
        lo += 1;
    }
    let before = &t[lo..start];
    let before = before.rsplit('\n').next().unwrap_or(before);
    let mut hi = (end + 12).min(t.len());
    while !t.is_char_boundary(hi) {
        hi -= 1;
    }
    let after = &t[end..hi];
    let after = after.split('\n').next().unwrap_or(after);
    // One automaton over each window (14 substring searches of both
    // windows per school name were ~4% of the engine on PI-dense text).
    static STAFF_AC: std::sync::LazyLock<aho_corasick::AhoCorasick> =
        std::sync::LazyLock::new(|| {
            aho_corasick::AhoCorasick::builder()
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(STAFF)
                .expect("staff words compile")
        });
    STAFF_AC.is_match(before) || STAFF_AC.is_match(after)
}

/// A keyword answered "no" (`是否留守儿童：否`, `孤儿=N`) or negated (`非孤儿`, `不是留守儿童`).
fn negated(t: &str, s: usize, e: usize) -> bool {
    let before = &t[..s];
    if before.ends_with('非')
        || before.ends_with("不是")
        || before.ends_with("不属于")
        || before.ends_with("无")
    {
        return true;
    }
    let rest = t[e..].trim_start_matches([' ', ':', '：', '=', '"', '\'', '\t']);
    if rest.len() == t.len() - e {
        return false;
    }
    [
        "否", "no", "No", "NO", "false", "False", "0", "N", "n", "无",
    ]
    .iter()
    .any(|w| {
        rest.starts_with(w)
            && !rest[w.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// A marker keyword used as a generic word, not about a person:
/// `残疾人专用通道`, `低保政策解读`, `留守儿童关爱工作`.
fn generic_use(after: &str) -> bool {
    let after = after.strip_prefix('人').unwrap_or(after);
    [
        "政策",
        "专用",
        "通道",
        "车位",
        "标准",
        "条例",
        "办法",
        "工作",
        "宣传",
        "知识",
        "保障法",
        "权益保障",
        "服务中心",
        "联合会",
        "关爱",
    ]
    .iter()
    .any(|w| after.starts_with(w))
}

/// Parse a date at `p`: YYYY-MM-DD, YYYY/M/D, YYYY.MM.DD, YYYY年M月D日,
/// YYYYMMDD. Returns the end and the date.
pub(super) fn parse_date(b: &[u8], p: usize) -> Option<(usize, NaiveDate)> {
    // The common form first (timestamps): YYYY-MM-DD, YYYY/MM/DD or
    // YYYY.MM.DD with two-digit fields, read without the loops below.
    if let Some(w) = b.get(p..p + 10) {
        let d = |i: usize| w[i].wrapping_sub(b'0');
        let sep = w[4];
        if matches!(sep, b'-' | b'/' | b'.')
            && w[7] == sep
            && [0, 1, 2, 3, 5, 6, 8, 9].iter().all(|&i| d(i) < 10)
            && !b.get(p + 10).is_some_and(u8::is_ascii_digit)
        {
            let y = d(0) as i32 * 1000 + d(1) as i32 * 100 + d(2) as i32 * 10 + d(3) as i32;
            let m = (d(5) * 10 + d(6)) as u32;
            let day = (d(8) * 10 + d(9)) as u32;
            return NaiveDate::from_ymd_opt(y, m, day).map(|dt| (p + 10, dt));
        }
    }
    let digits = |mut i: usize, max: usize| {
        let s = i;
        while i < b.len() && i - s < max && b[i].is_ascii_digit() {
            i += 1;
        }
        (s, i)
    };
    let (ys, ye) = digits(p, 8);
    let num = |s: usize, e: usize| validate::parse_u32(&b[s..e]);
    if ye - ys == 8 {
        if ye < b.len() && b[ye].is_ascii_digit() {
            return None;
        }
        let d = NaiveDate::from_ymd_opt(
            num(ys, ys + 4)? as i32,
            num(ys + 4, ys + 6)?,
            num(ys + 6, ys + 8)?,
        )?;
        return Some((ye, d));
    }
    if ye - ys != 4 {
        return None;
    }
    let y = num(ys, ye)? as i32;
    // 年/月/日 with at most one space on each side (OCR: `2015 年 7 月 3 日`);
    // the position after the word and its trailing space.
    let word = |i: usize, w: &str| {
        let i = if b.get(i) == Some(&b' ') { i + 1 } else { i };
        b[i.min(b.len())..].starts_with(w.as_bytes()).then(|| {
            let j = i + w.len();
            if b.get(j) == Some(&b' ') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
                j + 1
            } else {
                j
            }
        })
    };
    let rest = &b[ye..];
    let (after_sep, cn) = if let Some(j) = word(ye, "年") {
        (j, true)
    } else if matches!(rest.first(), Some(b'-' | b'/' | b'.')) {
        (ye + 1, false)
    } else {
        return None;
    };
    let (ms, me) = digits(after_sep, 2);
    if me == ms {
        return None;
    }
    let m = num(ms, me)?;
    let (ds, mut de);
    let day_end;
    if cn {
        let after_m = word(me, "月")?;
        (ds, de) = digits(after_m, 2);
        if de == ds {
            // YYYY年M月 (出生年月): the last day of the month, the youngest
            // the person can be, so a child is never missed at the boundary.
            let first = NaiveDate::from_ymd_opt(y, m, 1)?;
            let last = first
                .checked_add_months(chrono::Months::new(1))?
                .pred_opt()?;
            let end = if b[me] == b' ' { me + 4 } else { me + 3 };
            return Some((end, last));
        }
        day_end = de;
        if let Some(j) = word(de, "日").or_else(|| word(de, "号")) {
            // (the trailing space after 日 is not part of the date)
            de = if b[j - 1] == b' ' { j - 1 } else { j };
        }
    } else {
        if me >= b.len() || b[me] != b[ye] {
            return None;
        }
        (ds, de) = digits(me + 1, 2);
        if de == ds || de < b.len() && b[de].is_ascii_digit() {
            return None;
        }
        day_end = de;
    }
    let d = NaiveDate::from_ymd_opt(y, m, num(ds, day_end)?)?;
    Some((de, d))
}

/// A number of 1-3 ASCII digits or Chinese numerals ending at `p` (not
/// part of a longer digit run or an ASCII word): (its start, its value).
fn number_before(t: &str, p: usize) -> Option<(usize, u32)> {
    let b = t.as_bytes();
    let mut s = p;
    if s > 0 && b[s - 1].is_ascii_digit() {
        while s > 0 && b[s - 1].is_ascii_digit() {
            s -= 1;
        }
        if p - s > 3 || s > 0 && (b[s - 1].is_ascii_alphanumeric() || b[s - 1] == b'.') {
            return None;
        }
        return validate::parse_u32(&b[s..p]).map(|n| (s, n));
    }
    let mut k = 0;
    while k < 3 {
        match char_before(t, s) {
            Some(c) if is_cn_numeral(c) => {
                s -= c.len_utf8();
                k += 1;
            }
            _ => break,
        }
    }
    if s == p {
        return None;
    }
    chinese_numeral(&t[s..p]).map(|n| (s, n))
}

/// A number of 1-3 ASCII digits or Chinese numerals starting at `p`: (its
/// end, its value).
fn number_after(t: &str, p: usize) -> Option<(usize, u32)> {
    let b = t.as_bytes();
    let mut e = p;
    while e < b.len() && b[e].is_ascii_digit() {
        e += 1;
    }
    if e > p {
        if e - p > 3 || e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'.') {
            return None;
        }
        return validate::parse_u32(&b[p..e]).map(|n| (e, n));
    }
    let mut k = 0;
    while k < 3 {
        match char_at(t, e) {
            Some(c) if is_cn_numeral(c) => {
                e += c.len_utf8();
                k += 1;
            }
            _ => break,
        }
    }
    if e == p {
        return None;
    }
    chinese_numeral(&t[p..e]).map(|n| (e, n))
}

/// A birth word right after a date ending at `e` (one space allowed):
/// `2012年3月15日出生`, `2015-03-07 生`, `2012年3月15日生的`, `…生人`.
/// A bare `生` counts only before punctuation, a space, a digit, the end or
/// `的`/`人`: 生产, 生效, 生成 (production and validity dates) do not.
fn born_after(t: &str, e: usize) -> bool {
    let rest = t.get(e..).unwrap_or("");
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    if rest.starts_with("出生") || rest.starts_with("出世") {
        return true;
    }
    let Some(after) = rest.strip_prefix('生') else {
        return false;
    };
    match after.chars().next() {
        None => true,
        Some(c) => !is_cjk(c) || c == '的' || c == '人',
    }
}

/// The end of a clock time `[ T]H[H]:MM[:SS[.f…]]` right after a date
/// ending at `p` (a timestamp); `p` when none follows. A clock that runs
/// on into more digits or letters is not skipped.
fn skip_clock(b: &[u8], p: usize) -> usize {
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    if !matches!(b.get(p), Some(b' ' | b'T')) || !digit(p + 1) {
        return p;
    }
    let mut i = p + 2;
    if digit(i) {
        i += 1;
    }
    // :MM, then optionally :SS
    for field in 0..2 {
        if b.get(i) == Some(&b':') && digit(i + 1) && digit(i + 2) {
            i += 3;
        } else if field == 0 {
            return p;
        } else {
            break;
        }
    }
    // A fraction of a second (up to nanoseconds; a longer run is something else).
    if b.get(i) == Some(&b'.') && digit(i + 1) {
        let f = i + 1;
        i = f;
        while digit(i) && i - f < 9 {
            i += 1;
        }
    }
    if b.get(i).is_some_and(|&c| is_alnum(c) && c != b'Z') {
        return p;
    }
    i
}

/// Parse a day-first date D/M/YYYY or D.M.YYYY at `p` (never followed by a
/// digit or a time). Month-first US dates are not read: Chinese and
/// European records write the day first.
fn parse_day_first(b: &[u8], p: usize) -> Option<(usize, NaiveDate)> {
    let run = |mut i: usize, max: usize| {
        let s = i;
        while i < b.len() && i - s < max && b[i].is_ascii_digit() {
            i += 1;
        }
        (s, i)
    };
    let (ds, de) = run(p, 2);
    let sep = *b.get(de)?;
    let (ms, me) = run(de + 1, 2);
    if me == ms || b.get(me) != Some(&sep) {
        return None;
    }
    let (ys, ye) = run(me + 1, 4);
    if ye - ys != 4 || b.get(ye).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    let d = NaiveDate::from_ymd_opt(
        validate::parse_u32(&b[ys..ye])? as i32,
        validate::parse_u32(&b[ms..me])?,
        validate::parse_u32(&b[ds..de])?,
    )?;
    Some((ye, d))
}

/// Boundary words a school's proper name starts after (就读于, 在, 的, ...).
const CUTS: [&str; 41] = [
    "就读于",
    "毕业于",
    "就读",
    "在读",
    "来自",
    "转入",
    "转学到",
    "转到",
    "考入",
    "进入",
    "位于",
    "学校名称",
    "名称",
    "所在学校",
    "学校",
    "学生",
    "孩子",
    "儿子",
    "女儿",
    "姓名",
    "家长",
    "地址",
    "住址",
    "他",
    "她",
    "我",
    "你",
    "在",
    "于",
    "是",
    "的",
    "到",
    "去",
    "从",
    "读",
    "和",
    "与",
    "及",
    "或",
    "为",
    "所",
];
/// First characters of [`CUTS`]: most characters of a prefix start none.
const CUT_FIRST: &str = "就毕在来转考进位学名所孩儿女姓家地住他她我你于是的到去从读和与及或为";

/// Words after a grade that make it a subject, a book or a school notice
/// (三年级数学, 一年级新生入学指南, 初二年级家长会通知), not a pupil's grade.
const GRADE_NOT_PUPIL: [&str; 20] = [
    "数学",
    "语文",
    "英语",
    "上册",
    "下册",
    "教材",
    "练习",
    "试卷",
    "课本",
    "作文",
    "同步",
    "教案",
    "新生入学",
    "家长会",
    "期末",
    "期中",
    "考试",
    "招生",
    "课程",
    "教学",
];

/// Where the proper name of a school whose suffix starts at `ss` begins:
/// back over CJK characters, 第 + digits, digits right before the suffix and
/// brackets, then cut after the last boundary word (就读于, 在, 的, ...).
fn school_name_start(st: &St<'_>, ss: usize) -> usize {
    let t = st.text;
    // Extend back over CJK characters, 第 + digits, digits right before the suffix, brackets.
    let mut p = ss;
    let mut chars = 0;
    while chars < 20 {
        let Some(c) = char_before(t, p) else { break };
        if is_cjk(c) || matches!(c, '（' | '）' | '(' | ')') {
            p -= c.len_utf8();
            chars += 1;
        } else if c.is_ascii_digit() {
            let mut q = p;
            while q > 0 && st.b[q - 1].is_ascii_digit() {
                q -= 1;
            }
            let after_ok = p == ss;
            let before_di = char_before(t, q) == Some('第');
            if (after_ok || before_di) && p - q <= 3 {
                chars += p - q;
                p = q;
            } else {
                break;
            }
        } else {
            break;
        }
    }
    let mut start = p;
    // Cut after the last boundary word inside the prefix.
    let prefix = &t[start..ss];
    let mut cut_at = 0;
    for (idx, ch) in prefix.char_indices() {
        if !CUT_FIRST.contains(ch) {
            continue;
        }
        for c in CUTS {
            if !prefix[idx..].starts_with(c) {
                continue;
            }
            let after = idx + c.len();
            // Place names containing these characters.
            let rest = &prefix[after..];
            if c == "于" && rest.starts_with('都')
                || c == "和" && rest.starts_with('平')
                || c == "所" && idx == 0
            {
                continue;
            }
            if c == "在" && prefix[..idx].ends_with('所') {
                continue;
            }
            cut_at = cut_at.max(after);
        }
    }
    start += cut_at;
    start
}

impl Engine {
    pub(super) fn scan_impl(&self, text: &str, hints: &[Category], out: &mut Vec<Hit>) {
        let b = text.as_bytes();
        let mut ms = SCRATCH_MS.with(std::cell::Cell::take);
        ms.clear();
        let mut ctx_ends = SCRATCH_ENDS.with(std::cell::Cell::take);
        ctx_ends.clear();
        ctx_ends.resize(b.len() / 64 + 1, 0);
        let mut st = St {
            text,
            b,
            ms,
            hints,
            ctx_rules: 0,
            ctx_ends,
            ms_block: Vec::new(),
        };
        // Pass 1: every keyword, context word and trigger literal.
        let base = out.len();
        if self.anchored_ok {
            // One pass records keyword matches and the alphanumeric runs that
            // can be identifiers; the runs are classified once every context
            // word of the chunk is known.
            let mut tokens = SCRATCH_TOKENS.with(std::cell::Cell::take);
            tokens.clear();
            self.keywords_and_tokens(&mut st, &mut tokens);
            st.index_blocks();
            let mut resume = 0;
            for &(s, e) in &tokens {
                if (s as usize) >= resume {
                    resume = self.token(&st, s as usize, e as usize, out);
                }
            }
            SCRATCH_TOKENS.with(|c| c.set(tokens));
        } else {
            use aho_corasick::automaton::Automaton;
            // Unanchored searches of a DFA built with both start kinds never fail.
            let matches = self
                .kw_dfa
                .try_find_iter(aho_corasick::Input::new(text))
                .expect("keyword DFA has an unanchored start state");
            for m in matches {
                self.push_match(&mut st, m.start(), m.end(), m.pattern().as_usize());
            }
            st.index_blocks();
            // Pass 2: ASCII alphanumeric runs.
            self.scan_tokens(&st, out);
        }
        let tokens_end = out.len();
        // Where the guardian test resumes its walk of the token hits.
        let mut guard_at = base;
        // Pass 3: triggers.
        for k in 0..st.ms.len() {
            let m = st.ms[k];
            for role in &self.roles[m.pid as usize] {
                match *role {
                    Role::Trig(Trig::School) => {
                        self.school(&st, m, out);
                        self.kindergarten_class(&st, m, out);
                    }
                    Role::Trig(Trig::Sui) => self.age_sui(&st, m, out),
                    Role::Trig(Trig::Months) => self.age_months(&st, m, out),
                    Role::Trig(Trig::Grade) => self.grade(&st, m, out),
                    Role::Trig(Trig::Hao) => self.address(&st, m, out),
                    Role::Trig(Trig::NotSchool) => {}
                    Role::Kw(rule, child) => {
                        let (_, neg) = self.context(&st, rule, m.start as usize, m.end as usize);
                        if !neg
                            && !negated(text, m.start as usize, m.end as usize)
                            && !generic_use(&text[m.end as usize..])
                        {
                            let kw = &text[m.start as usize..m.end as usize];
                            let conf = self.rules[rule as usize].confidence;
                            self.emit(
                                out,
                                rule,
                                m.start as usize,
                                m.end as usize,
                                conf,
                                kw,
                                self.mask(Category::VulnerableChild, kw),
                                child.then_some(AgeEvidence::ChildMarker),
                            );
                        }
                    }
                    Role::Guard(rule) => {
                        self.guardian(&st, m, rule, (base, tokens_end, &mut guard_at), out)
                    }
                    Role::Ctx(rule) => match self.rules[rule as usize].scanner {
                        Scanner::PersonName => self.name_after(&st, m, rule, out),
                        Scanner::Address => self.address_after(&st, m, rule, base, out),
                        Scanner::Age => self.age_word(&st, m, rule, out),
                        Scanner::BirthDate => self.birth_cn(&st, m, out),
                        _ => {}
                    },
                    Role::Neg(_) => {}
                }
            }
        }
        // School abbreviations (北京四中, 实验二小).
        if self.rule_for(Scanner::SchoolName).is_some() {
            self.school_abbr(&st, out);
        }
        // Pass 4: e-mail.
        if self.rule_for(Scanner::Email).is_some()
            && (b.len() >= super::SHORT || super::has_byte(b, b'@'))
        {
            for at in memchr::memchr_iter(b'@', b) {
                self.email(&st, at, out);
            }
        }
        for &ri in &self.regex_rules {
            let r = &self.rules[ri as usize];
            if let Some(re) = &r.regex {
                for m in re.find_iter(text) {
                    let (pos, neg) = self.context(&st, ri, m.start(), m.end());
                    if neg || r.required_context && !pos {
                        continue;
                    }
                    let conf = r.confidence + if pos { 0.1 } else { 0.0 };
                    self.emit(
                        out,
                        ri,
                        m.start(),
                        m.end(),
                        conf,
                        m.as_str(),
                        self.mask(r.category, m.as_str()),
                        None,
                    );
                }
            }
        }
        SCRATCH_MS.with(|c| c.set(st.ms));
        SCRATCH_ENDS.with(|c| c.set(st.ctx_ends));
        if st.ms_block.capacity() > 0 {
            SCRATCH_BLOCKS.with(|c| c.set(st.ms_block));
        }
    }

    /// Record one automaton match (ASCII words only at word/camelCase boundaries).
    #[inline]
    fn push_match(&self, st: &mut St<'_>, s: usize, e: usize, pid: usize) -> bool {
        let b = st.b;
        if self.ascii_word[pid] {
            let start_ok = s == 0
                || !is_alnum(b[s - 1])
                || b[s].is_ascii_uppercase() && b[s - 1].is_ascii_lowercase();
            let end_ok = e == b.len()
                || !b[e].is_ascii_alphabetic()
                || b[e].is_ascii_uppercase() && b[e - 1].is_ascii_lowercase();
            if !(start_ok && end_ok) {
                return false;
            }
        }
        for r in &self.roles[pid] {
            if let Role::Ctx(i) | Role::Neg(i) = r {
                st.ctx_rules |= 1u128 << (*i as u32).min(127);
            }
        }
        if self.is_context[pid] {
            st.ctx_ends[e / 64] |= 1 << (e % 64);
        }
        st.ms.push(M {
            start: s as u32,
            end: e as u32,
            pid: pid as u32,
        });
        true
    }

    /// (positive context, negative context) for a candidate at `start..end`:
    /// positive when a context word of the rule is within the window (same
    /// line) or the column is hinted; negative when the nearest context word
    /// before the candidate is a negative word of the rule.
    fn context(&self, st: &St<'_>, rule: u16, start: usize, end: usize) -> (bool, bool) {
        let cat = self.rules[rule as usize].category;
        let mut pos = st.hints.contains(&cat);
        if !st.has_ctx(rule) {
            return (pos, false);
        }
        let b = st.b;
        let lo = start.saturating_sub(WIN_BEFORE);
        let line_start = memchr::memrchr(b'\n', &b[lo..start]).map_or(lo, |p| lo + p + 1);
        let hi = (end + WIN_AFTER).min(b.len());
        let line_end = memchr::memchr(b'\n', &b[end..hi]).map_or(hi, |p| end + p);
        let i0 = st.ms_partition(line_start, |m| (m.start as usize) < line_start);
        let mut nearest: Option<(u32, usize)> = None;
        for m in &st.ms[i0..] {
            let (ms, me) = (m.start as usize, m.end as usize);
            if ms >= line_end {
                break;
            }
            let roles = &self.roles[m.pid as usize];
            if me <= start {
                if self.is_context[m.pid as usize] {
                    nearest = Some((m.pid, me));
                }
                if roles.contains(&Role::Ctx(rule)) {
                    pos = true;
                }
            } else if ms >= end && roles.contains(&Role::Ctx(rule)) {
                pos = true;
            }
        }
        // A negative word counts only when it labels this value: no other
        // field separator stands between them (`order_id=… user=138…` and
        // `"order_id":…,"phone":"138…"` are not order numbers).
        let neg = nearest.is_some_and(|(p, me)| {
            self.roles[p as usize].contains(&Role::Neg(rule)) && labels_value(&b[me..start])
        });
        (pos, neg)
    }

    /// A birth-date context word close before `s` (at most 24 bytes, no digits
    /// in between, same line), or a hinted column. Other dates on the line
    /// (created, updated, timestamps) are not birth dates.
    fn birth_context(&self, st: &St<'_>, rule: u16, s: usize) -> bool {
        if st.hints.contains(&Category::BirthDate) {
            return true;
        }
        if !st.has_ctx(rule) {
            return false;
        }
        let lo = s.saturating_sub(24);
        // Fast reject (most dates are timestamps at the start of a line): a
        // qualifying word ends at some q in lo..=s with no digit or newline
        // in b[q..s], and a context word ends at q.
        let b = st.b;
        let mut q = s;
        loop {
            if q == 0 || q < lo {
                return false;
            }
            let c = b[q - 1];
            if st.ctx_ends_at(q) {
                break;
            }
            if c.is_ascii_digit() || c == b'\n' {
                return false;
            }
            q -= 1;
        }
        let i0 = st.ms_partition(lo, |m| (m.end as usize) < lo);
        st.ms[i0..]
            .iter()
            .take_while(|m| (m.end as usize) <= s)
            .any(|m| {
                self.roles[m.pid as usize].contains(&Role::Ctx(rule))
                    && !st.b[m.end as usize..s]
                        .iter()
                        .any(|c| c.is_ascii_digit() || *c == b'\n')
            })
    }

    /// Whether a context word of `rule` ends at `p` after skipping separators backwards.
    fn ctx_adjacent_before(&self, st: &St<'_>, rule: u16, p: usize) -> bool {
        if !st.has_ctx(rule) || p == 0 {
            return false;
        }
        // Fast reject (most numbers): no context word ends within the 12
        // bytes before `p` (the most that 4 separators skipped below span).
        if !st.ctx_ends_in(p.saturating_sub(12), p) {
            return false;
        }
        let t = st.text;
        let mut q = p;
        let mut steps = 0;
        while let Some(c) = char_before(t, q) {
            if steps < 4
                && matches!(
                    c,
                    ' ' | '\t' | ':' | '：' | '=' | '"' | '\'' | '是' | '为' | '，' | ','
                )
            {
                q -= c.len_utf8();
                steps += 1;
            } else {
                break;
            }
        }
        // Fast reject: some context word must end right there.
        if q == 0 || !st.ctx_ends_at(q) {
            return false;
        }
        let i = st.ms_partition(q, |m| (m.end as usize) < q);
        st.ms.get(i).is_some_and(|m| {
            m.end as usize == q && self.roles[m.pid as usize].contains(&Role::Ctx(rule))
        })
    }

    /// Pass 2: ASCII alphanumeric runs.
    fn scan_tokens(&self, st: &St<'_>, out: &mut Vec<Hit>) {
        let b = st.b;
        let n = b.len();
        let mut i = 0;
        while i < n {
            if !is_alnum(b[i]) {
                i += 1;
                continue;
            }
            let s = i;
            while i < n && is_alnum(b[i]) {
                i += 1;
            }
            let tok = &b[s..i];
            let first = tok[0];
            if first.is_ascii_digit() {
                let digits_end = tok
                    .iter()
                    .position(|c| !c.is_ascii_digit())
                    .map_or(i, |p| s + p);
                if digits_end == i
                    || (i - s == 18 && digits_end == s + 17 && (b[s + 17] | 0x20) == b'x')
                {
                    i = self.digit_run(st, s, i, out);
                }
            } else if first.is_ascii_uppercase() && tok.len() >= 9 {
                self.letter_token(st, s, i, out);
            }
        }
    }

    /// Classify one alphanumeric run at `s..e`; returns where scanning resumes.
    fn token(&self, st: &St<'_>, s: usize, e: usize, out: &mut Vec<Hit>) -> usize {
        let b = st.b;
        let tok = &b[s..e];
        let first = tok[0];
        if first.is_ascii_digit() {
            let digits_end = tok
                .iter()
                .position(|c| !c.is_ascii_digit())
                .map_or(e, |p| s + p);
            if digits_end == e
                || (e - s == 18 && digits_end == s + 17 && (b[s + 17] | 0x20) == b'x')
            {
                return self.digit_run(st, s, e, out);
            }
        } else if first.is_ascii_uppercase() && tok.len() >= 9 {
            self.letter_token(st, s, e, out);
        }
        e
    }

    /// Whether a keyword may start at byte `i` of `text`, whose first
    /// character is `c1` (`len1` bytes): a single-character keyword, the
    /// first two characters of a two-character keyword, or the first three
    /// of a longer one. A necessary condition only (hashed bitmaps).
    #[inline(always)]
    fn may_start(&self, b: &[u8], text: &str, i: usize, c1: u32, len1: usize) -> bool {
        let h1 = (c1 & 0xFFFF) as usize;
        if self.single[h1 / 64] & (1 << (h1 % 64)) != 0 {
            return true;
        }
        let j = i + len1;
        let Some((c2, len2)) = lower_char_at(b, text, j) else {
            return false;
        };
        let h = super::pair_hash(c1, c2);
        if self.pair[h / 64] & (1 << (h % 64)) == 0 {
            return false;
        }
        if self.pair_only[h / 64] & (1 << (h % 64)) != 0 {
            return true;
        }
        let Some((c3, _)) = lower_char_at(b, text, j + len2) else {
            return false;
        };
        let h = super::triple_hash(c1, c2, c3);
        self.triple[h / 64] & (1 << (h % 64)) != 0
    }

    /// The single pass over the text: keyword matches (bitmap of first
    /// characters, anchored automaton where a pattern can start) and the
    /// alphanumeric runs that may be identifiers (starting with a digit, or
    /// an uppercase letter and at least 9 long).
    ///
    /// 64 bytes at a time: [`block_masks`] classifies the block (SIMD on
    /// x86-64) and only the positions that can matter are visited — where
    /// an alphanumeric run starts or ends, a camelCase uppercase letter, the
    /// lead byte of a 3-byte character. Spaces, punctuation, the inside of
    /// runs and continuation bytes cost nothing per byte. Same results as
    /// the byte loop ([`Self::keywords_and_tokens_bytes`], kept for packs
    /// the masks cannot serve and as the reference of the equality test).
    fn keywords_and_tokens(&self, st: &mut St<'_>, tokens: &mut Vec<(u32, u32)>) {
        // Cells (short texts) take the byte loop: a block's fixed costs
        // (the padded copy, four 16-byte classifications) are more than a
        // few dozen bytes cost one at a time.
        if !self.mask_loop_ok || st.b.len() < super::SHORT {
            self.keywords_and_tokens_bytes(st, tokens)
        } else {
            self.keywords_and_tokens_masks(st, tokens)
        }
    }

    /// [`Self::keywords_and_tokens`] by 64-byte block masks (needs `mask_loop_ok`).
    fn keywords_and_tokens_masks(&self, st: &mut St<'_>, tokens: &mut Vec<(u32, u32)>) {
        let b = st.b;
        let n = b.len();
        let text = st.text;
        let mut kw_end = 0usize;
        // Start of the open token run: one that starts with a digit or an
        // uppercase letter (usize::MAX: none).
        let mut run = usize::MAX;
        let (mut carry_an, mut carry_lo, mut carry_run) = (0u64, 0u64, 0u64);
        let mut base = 0;
        while base < n {
            let m = if base + 64 <= n {
                block_masks(b[base..base + 64].try_into().expect("64 bytes"))
            } else {
                let mut pad = [0u8; 64];
                pad[..n - base].copy_from_slice(&b[base..]);
                block_masks(&pad)
            };
            let valid = if n - base < 64 {
                (1u64 << (n - base)) - 1
            } else {
                u64::MAX
            };
            let starts = m.an & !(m.an << 1 | carry_an);
            carry_an = m.an >> 63;
            // Tokens: runs that start with a digit or an uppercase letter.
            // Adding a run's start bit to the run carries to the byte after
            // it, so `sum & !an` marks the end of exactly those runs (the
            // carry out of the block continues a run into the next one).
            // Tokens do not depend on keyword matches: the byte loop skips
            // over CJK matches only, and those never start or end inside a
            // run (`mask_loop_ok`); ASCII matches leave its run walk alone.
            let ts = starts & !m.lo;
            let (sum, c1) = m.an.overflowing_add(ts);
            let (sum, c2) = sum.overflowing_add(carry_run);
            carry_run = (c1 | c2) as u64;
            let te = sum & !m.an & valid;
            let mut tok = (ts | te) & valid;
            while tok != 0 {
                let k = tok.trailing_zeros() as usize;
                tok &= tok - 1;
                let i = base + k;
                if te >> k & 1 != 0 {
                    let c = b[run];
                    if c.is_ascii_digit() || i - run >= 9 {
                        tokens.push((run as u32, i as u32));
                    }
                    run = usize::MAX;
                }
                if ts >> k & 1 != 0 {
                    run = i;
                }
            }
            // Keywords: ASCII words (and camelCase humps), 3-byte characters.
            // First the first-character tests of every candidate, without
            // branches (ASCII and CJK candidates interleave in Chinese logs,
            // and a branch on which one it is mispredicted), then the rare
            // ones that pass, in order.
            let camel = m.up & (m.lo << 1 | carry_lo);
            carry_lo = m.lo >> 63;
            let mut pass = 0u64;
            let mut a = (starts | camel) & valid;
            while a != 0 {
                let k = a.trailing_zeros() as usize;
                a &= a - 1;
                pass |= (self.first_ascii[b[base + k] as usize] as u64) << k;
            }
            let mut c3 = m.l3 & valid;
            while c3 != 0 {
                let k = c3.trailing_zeros() as usize;
                c3 &= c3 - 1;
                let cp = cp3(b, base + k);
                pass |= (self.first_cjk[cp / 64] >> (cp % 64) & 1) << k;
            }
            while pass != 0 {
                let k = pass.trailing_zeros() as usize;
                pass &= pass - 1;
                let i = base + k;
                // Matches do not overlap: nothing starts inside the last one.
                if i < kw_end {
                    continue;
                }
                let c = b[i];
                let (c1, len1) = if c < 0x80 {
                    (c.to_ascii_lowercase() as u32, 1)
                } else {
                    (cp3(b, i) as u32, 3)
                };
                if self.may_start(b, text, i, c1, len1) {
                    if let Some((ms, me, pid)) = anchored_at(&self.kw_dfa, b, i) {
                        if self.push_match(st, ms, me, pid) {
                            kw_end = me;
                        }
                    }
                }
            }
            base += 64;
        }
        if run != usize::MAX {
            // A token run reaching the end of the text.
            let c = b[run];
            if c.is_ascii_digit() || n - run >= 9 {
                tokens.push((run as u32, n as u32));
            }
        }
    }

    /// [`Self::keywords_and_tokens`] a byte at a time.
    fn keywords_and_tokens_bytes(&self, st: &mut St<'_>, tokens: &mut Vec<(u32, u32)>) {
        let b = st.b;
        let n = b.len();
        let text = st.text;
        let mut kw_end = 0usize;
        let mut i = 0;
        let anchored = |i: usize| anchored_at(&self.kw_dfa, b, i);
        let may_start = |i: usize, c1: u32, len1: usize| self.may_start(b, text, i, c1, len1);
        while i < n {
            let c = b[i];
            if c < 0x80 {
                if !is_alnum(c) {
                    i += 1;
                    continue;
                }
                let s = i;
                if i >= kw_end
                    && self.first_ascii[c as usize]
                    && may_start(i, c.to_ascii_lowercase() as u32, 1)
                {
                    if let Some((ms, me, pid)) = anchored(i) {
                        if self.push_match(st, ms, me, pid) {
                            kw_end = me;
                        }
                    }
                }
                i += 1;
                // Digits and lowercase letters 8 at a time; an uppercase
                // letter may start a camelCase keyword; anything else ends the run.
                loop {
                    i = skip_digits_lower(b, i);
                    if i >= n || !b[i].is_ascii_uppercase() {
                        break;
                    }
                    let d = b[i];
                    if b[i - 1].is_ascii_lowercase()
                        && i >= kw_end
                        && self.first_ascii[d as usize]
                        && may_start(i, d.to_ascii_lowercase() as u32, 1)
                    {
                        if let Some((ms, me, pid)) = anchored(i) {
                            if self.push_match(st, ms, me, pid) {
                                kw_end = me;
                            }
                        }
                    }
                    i += 1;
                }
                if c.is_ascii_digit() || c.is_ascii_uppercase() && i - s >= 9 {
                    tokens.push((s as u32, i as u32));
                }
            } else if c >= 0xE0 && c < 0xF0 {
                if i + 2 < n && i >= kw_end {
                    let cp = ((c & 0x0F) as usize) << 12
                        | ((b[i + 1] & 0x3F) as usize) << 6
                        | (b[i + 2] & 0x3F) as usize;
                    if self.first_cjk[cp / 64] & (1 << (cp % 64)) != 0 && may_start(i, cp as u32, 3)
                    {
                        if let Some((ms, me, pid)) = anchored(i) {
                            if self.push_match(st, ms, me, pid) {
                                kw_end = me;
                                i = me;
                                continue;
                            }
                        }
                    }
                }
                i += 3;
            } else {
                i += if c >= 0xF0 { 4 } else { 1 };
            }
        }
    }

    /// A run of digits at `s..e` (possibly 17 digits + X), followed by more
    /// groups joined by single spaces or hyphens. Returns where scanning resumes.
    fn digit_run(&self, st: &St<'_>, s: usize, e: usize, out: &mut Vec<Hit>) -> usize {
        let b = st.b;
        let n = b.len();
        // A date (YYYY-MM-DD, YYYY年M月D日, ...) first: timestamps are never IDs.
        if e - s == 4
            && e < n
            && (matches!(b[e], b'-' | b'/' | b'.' | 0xE5)
                || b[e] == b' ' && b[e + 1..].starts_with("年".as_bytes()))
        {
            if let Some((de, d)) = parse_date(b, s) {
                if de >= n || !b[de].is_ascii_digit() {
                    self.birth_date(st, s, de, d, out);
                    // The clock of a timestamp (its fields are never ages or IDs).
                    return skip_clock(b, de);
                }
            }
            // A birth year told by a birth word after it (2015年出生, 2015年生):
            // the last day of the year, the youngest the person can be, so
            // a child is never missed at the boundary (as for 2015年3月).
            let ye = e + "年".len();
            if b[e..].starts_with("年".as_bytes()) && born_after(st.text, ye) {
                let year = validate::parse_u32(&b[s..e]).unwrap_or(0) as i32;
                if let Some(d) = NaiveDate::from_ymd_opt(year, 12, 31) {
                    // (born this year: at most today)
                    let d = if year == self.opts.as_of.year() {
                        self.opts.as_of
                    } else {
                        d
                    };
                    self.birth_date(st, s, ye, d, out);
                    return ye;
                }
            }
        }
        // Day-first D/M/YYYY or D.M.YYYY: a birth date only with a birth context.
        if (1..=2).contains(&(e - s)) && e < n && matches!(b[e], b'/' | b'.') {
            if let Some((de, d)) = parse_day_first(b, s) {
                self.birth_date(st, s, de, d, out);
                return de;
            }
        }
        // (010)62345678
        if (3..=4).contains(&(e - s))
            && s > 0
            && b[s - 1] == b'('
            && e + 1 < n
            && b[e] == b')'
            && b[s] == b'0'
        {
            let ls = e + 1;
            let mut le = ls;
            while le < n && b[le].is_ascii_digit() {
                le += 1;
            }
            if (le >= n || !is_alnum(b[le])) && validate::landline(&b[s..e], &b[ls..le]) {
                if let Some(rule) = self.rule_for(Scanner::Landline) {
                    let (pos, neg) = self.context(st, rule, s - 1, le);
                    if !neg {
                        let mut norm = String::from_utf8_lossy(&b[s..e]).into_owned();
                        norm.push_str(&String::from_utf8_lossy(&b[ls..le]));
                        let conf =
                            self.rules[rule as usize].confidence + if pos { 0.2 } else { 0.1 };
                        self.emit(
                            out,
                            rule,
                            s - 1,
                            le,
                            conf,
                            &norm,
                            self.mask(Category::CnLandline, &norm),
                            None,
                        );
                        return le;
                    }
                }
            }
        }
        // Decimal fractions and version numbers are not identifiers.
        if s >= 2 && b[s - 1] == b'.' && b[s - 2].is_ascii_digit() {
            return e;
        }
        // A lone run (no group joined after it, below: a space or hyphen,
        // then a digit) of a length no identifier has: nothing to classify;
        // of 1-3 digits (clock fields, counts, JSON numbers: most runs of a
        // log): an age or nothing, without setting up the group joining.
        let joined = e + 1 < n && matches!(b[e], b' ' | b'-') && b[e + 1].is_ascii_digit();
        if !joined {
            if !id_length(e - s) {
                return e;
            }
            if e - s <= 3 {
                if let Some(c) = self.age_digits(st, &b[s..e], s, e) {
                    self.emit_cand(st, c, s, e, &b[s..e], out);
                }
                return e;
            }
        }
        let mut groups: [(usize, usize); 6] = [(0, 0); 6];
        let mut ng = 1;
        groups[0] = (s, e);
        let mut j = e;
        while ng < 6 && j + 1 < n && (b[j] == b' ' || b[j] == b'-') && b[j + 1].is_ascii_digit() {
            let gs = j + 1;
            let mut ge = gs;
            while ge < n && b[ge].is_ascii_digit() {
                ge += 1;
            }
            if ge < n && (b[ge] | 0x20) == b'x' && (ge + 1 >= n || !is_alnum(b[ge + 1])) {
                ge += 1;
            } else if ge < n && is_alnum(b[ge]) {
                break;
            }
            groups[ng] = (gs, ge);
            ng += 1;
            j = ge;
        }
        if e < n && b[e] == b'.' && e + 1 < n && b[e + 1].is_ascii_digit() {
            ng = 1; // 123.45: a decimal, try no joined forms
            if e - s <= 3 {
                return e;
            }
        }
        let mut g = 0;
        let mut resume = e;
        while g < ng {
            let mut buf = [0u8; 24];
            let mut len = 0;
            let mut best: Option<(usize, Cand, usize)> = None;
            for k in g..ng {
                let (gs, ge) = groups[k];
                if len + (ge - gs) > 24 {
                    break;
                }
                // Only the last group of an ID may end in X.
                if k > g && (b[groups[k - 1].1 - 1] | 0x20) == b'x' {
                    break;
                }
                buf[len..len + ge - gs].copy_from_slice(&b[gs..ge]);
                len += ge - gs;
                if let Some(c) = self.classify(
                    st,
                    &buf[..len],
                    groups[g].0,
                    ge,
                    k - g + 1,
                    groups[g..=k].as_ref(),
                ) {
                    best = Some((k, c, len));
                }
            }
            match best {
                Some((k, c, blen)) => {
                    self.emit_cand(st, c, groups[g].0, groups[k].1, &buf[..blen], out);
                    resume = groups[k].1;
                    g = k + 1;
                }
                None => {
                    resume = resume.max(groups[g].1);
                    g += 1;
                }
            }
        }
        resume
    }

    /// Which identifier the joined digits `d` (from `s` to `e`, in `ng` groups) are, if any.
    fn classify(
        &self,
        st: &St<'_>,
        d: &[u8],
        s: usize,
        e: usize,
        ng: usize,
        groups: &[(usize, usize)],
    ) -> Option<Cand> {
        let b = st.b;
        let n = d.len();
        if !id_length(n) {
            return None;
        }
        let single = ng == 1;
        let hy = |k: usize| b[groups[k].0 - 1] == b'-';
        match n {
            18 => {
                if let Some(birth) = validate::resident_id_18_bytes(d) {
                    if birth <= self.opts.as_of
                        && (self.regions.contains(d) || validate::province_prefix(d))
                    {
                        return Some(Cand::Id18 {
                            birth,
                            known_region: self.regions.contains(d),
                        });
                    }
                }
                if d.iter().all(u8::is_ascii_digit) {
                    return self.card(st, d, s, e);
                }
                None
            }
            16 | 17 | 19 => self.card(st, d, s, e),
            15 => {
                if single && d.starts_with(b"0086") && validate::mobile_bytes(&d[4..]) {
                    return Some(Cand::Mobile { prefix: 4 });
                }
                if !single
                    && d.starts_with(b"0086")
                    && validate::mobile_bytes(&d[4..])
                    && groups[0].1 - groups[0].0 == 4
                {
                    return Some(Cand::Mobile { prefix: 4 });
                }
                if single && self.regions.contains(d) {
                    if let Some(birth) = validate::resident_id_15_bytes(d) {
                        let rule = self.rule_for(Scanner::ResidentId)?;
                        if self.context(st, rule, s, e).0 {
                            return Some(Cand::Id15 { birth });
                        }
                    }
                }
                None
            }
            13 => {
                let plus = s > 0 && b[s - 1] == b'+';
                let sep86 = !single && groups[0].1 - groups[0].0 == 2;
                if d.starts_with(b"86")
                    && validate::mobile_bytes(&d[2..])
                    && (plus || sep86 || single)
                {
                    return Some(Cand::Mobile { prefix: 2 });
                }
                None
            }
            11 => {
                if validate::mobile_bytes(d) {
                    // printed forms: 3-4-4 or 3-8 only
                    let ok = single
                        || ng == 3
                            && groups[0].1 - groups[0].0 == 3
                            && groups[1].1 - groups[1].0 == 4
                        || ng == 2 && groups[0].1 - groups[0].0 == 3;
                    if ok {
                        return Some(Cand::Mobile { prefix: 0 });
                    }
                }
                if single && d[0] == b'0' {
                    return self.landline_single(st, d, s, e);
                }
                if ng == 2 && d[0] == b'0' {
                    return self.landline_pair(st, groups, s, e, hy(1));
                }
                None
            }
            10 | 12 => {
                if single && d[0] == b'0' {
                    return self.landline_single(st, d, s, e);
                }
                if ng == 2 && d[0] == b'0' {
                    return self.landline_pair(st, groups, s, e, hy(1));
                }
                None
            }
            8 if single => {
                // YYYYMMDD birth date with context, or a Taiwan permit number with context.
                if let Some((_, date)) = parse_date(d, 0) {
                    let rule = self.rule_for(Scanner::BirthDate)?;
                    if date.year() >= 1900 && self.birth_context(st, rule, s) {
                        return Some(Cand::Birth(date));
                    }
                }
                let rule = self.rule_for(Scanner::TwPermit)?;
                self.context(st, rule, s, e).0.then_some(Cand::Tw)
            }
            1..=3 if single => self.age_digits(st, d, s, e),
            _ => None,
        }
    }

    fn card(&self, st: &St<'_>, d: &[u8], s: usize, e: usize) -> Option<Cand> {
        if !(16..=19).contains(&d.len())
            || !matches!(d[0], b'3'..=b'6' | b'9')
            || !validate::luhn(d)
        {
            return None;
        }
        let rule = self.rule_for(Scanner::BankCard)?;
        let (pos, neg) = self.context(st, rule, s, e);
        (pos && !neg).then_some(Cand::Card)
    }

    fn landline_single(&self, st: &St<'_>, d: &[u8], s: usize, e: usize) -> Option<Cand> {
        let ok = (3..=4).any(|a| a < d.len() && validate::landline(&d[..a], &d[a..]));
        let rule = self.rule_for(Scanner::Landline)?;
        let paren = false;
        (ok && !paren && self.context(st, rule, s, e).0).then_some(Cand::Landline { ctx: true })
    }

    fn landline_pair(
        &self,
        st: &St<'_>,
        groups: &[(usize, usize)],
        s: usize,
        e: usize,
        hyphen: bool,
    ) -> Option<Cand> {
        let b = st.b;
        let area = &b[groups[0].0..groups[0].1];
        let local = &b[groups[1].0..groups[1].1];
        if !validate::landline(area, local) {
            return None;
        }
        let rule = self.rule_for(Scanner::Landline)?;
        let (pos, neg) = self.context(st, rule, s, e);
        if neg || !hyphen && !pos {
            return None;
        }
        Some(Cand::Landline { ctx: pos })
    }

    /// A 1–3 digit number: an age when a context word (年龄, age, nl) is
    /// adjacent before it or "years old" follows. (Numbers followed by 岁 are
    /// handled by the 岁 trigger.)
    fn age_digits(&self, st: &St<'_>, d: &[u8], s: usize, e: usize) -> Option<Cand> {
        let b = st.b;
        let rule = self.rule_for(Scanner::Age)?;
        let after = &b[e..];
        let after_trim = after.strip_prefix(b" ").unwrap_or(after);
        // What makes it an age first (most short numbers have neither).
        let years_old = matches!(after_trim.first(), Some(b'y' | b'Y' | b'-')) && {
            let a = &after_trim[..after_trim.len().min(10)];
            let starts = |p: &[u8]| a.len() >= p.len() && a[..p.len()].eq_ignore_ascii_case(p);
            starts(b"years old")
                || starts(b"year old")
                || starts(b"yrs old")
                || starts(b"-year-old")
        };
        if !years_old && !self.ctx_adjacent_before(st, rule, s) {
            return None;
        }
        let v = validate::parse_u32(d)?;
        if v > 120 {
            return None;
        }
        if after_trim.starts_with("岁".as_bytes()) || after_trim.starts_with("周岁".as_bytes()) {
            return None;
        }
        // ranges: 3-6, 3~6
        if matches!(after.first(), Some(b'-' | b'~'))
            && after.get(1).is_some_and(u8::is_ascii_digit)
        {
            return None;
        }
        if s >= 2 && matches!(b[s - 1], b'-' | b'~') && b[s - 2].is_ascii_digit() {
            return None;
        }
        if after.first() == Some(&b'%')
            || after.first() == Some(&b'.') && after.get(1).is_some_and(u8::is_ascii_digit)
        {
            return None;
        }
        let (_, neg) = self.context(st, rule, s, e);
        (!neg).then_some(Cand::Age(v))
    }

    fn emit_cand(&self, st: &St<'_>, c: Cand, s: usize, e: usize, buf: &[u8], out: &mut Vec<Hit>) {
        let b = st.b;
        let d = buf;
        // digits (and X): ASCII, copied only to uppercase an `x`; not
        // needed at all when hits carry no mask or fingerprint (counting).
        let identity = super::FINGERPRINTS.with(std::cell::Cell::get);
        let as_str = |x| digits_str(x, identity);
        fn digits_str(x: &[u8], identity: bool) -> std::borrow::Cow<'_, str> {
            if !identity {
                std::borrow::Cow::Borrowed("")
            } else if x.iter().any(u8::is_ascii_lowercase) {
                let mut v = x.to_vec();
                v.make_ascii_uppercase();
                std::borrow::Cow::Owned(String::from_utf8(v).unwrap_or_default())
            } else {
                std::borrow::Cow::Borrowed(std::str::from_utf8(x).unwrap_or_default())
            }
        }
        match c {
            Cand::Id18 {
                birth,
                known_region,
            } => {
                let Some(rule) = self.rule_for(Scanner::ResidentId) else {
                    return;
                };
                let (pos, neg) = self.context(st, rule, s, e);
                let mut conf = self.rules[rule as usize].confidence;
                if pos {
                    conf += 0.08;
                }
                if !known_region {
                    conf -= 0.15;
                }
                if neg {
                    conf -= 0.3;
                }
                if conf < 0.5 {
                    return;
                }
                let norm = as_str(d);
                self.emit(
                    out,
                    rule,
                    s,
                    e,
                    conf,
                    &norm,
                    self.mask(Category::CnResidentId, &norm),
                    Some(AgeEvidence::BirthDate(birth)),
                );
            }
            Cand::Id15 { birth } => {
                let Some(rule) = self.rule_for(Scanner::ResidentId) else {
                    return;
                };
                let norm = as_str(d);
                self.emit(
                    out,
                    rule,
                    s,
                    e,
                    0.8,
                    &norm,
                    self.mask(Category::CnResidentId, &norm),
                    Some(AgeEvidence::BirthDate(birth)),
                );
            }
            Cand::Mobile { prefix } => {
                let Some(rule) = self.rule_for(Scanner::Mobile) else {
                    return;
                };
                let start = if prefix > 0 && s > 0 && b[s - 1] == b'+' {
                    s - 1
                } else {
                    s
                };
                let (pos, neg) = self.context(st, rule, start, e);
                if neg {
                    return;
                }
                let mut conf = self.rules[rule as usize].confidence;
                if pos {
                    conf += 0.1;
                }
                let norm = as_str(&d[prefix..]);
                self.emit(
                    out,
                    rule,
                    start,
                    e,
                    conf,
                    &norm,
                    self.mask(Category::CnMobile, &norm),
                    None,
                );
            }
            Cand::Landline { ctx } => {
                let Some(rule) = self.rule_for(Scanner::Landline) else {
                    return;
                };
                let start = if s > 0 && b[s - 1] == b'(' { s - 1 } else { s };
                let norm = as_str(d);
                let conf = self.rules[rule as usize].confidence + if ctx { 0.2 } else { 0.0 };
                self.emit(
                    out,
                    rule,
                    start,
                    e,
                    conf,
                    &norm,
                    self.mask(Category::CnLandline, &norm),
                    None,
                );
            }
            Cand::Card => {
                let Some(rule) = self.rule_for(Scanner::BankCard) else {
                    return;
                };
                let norm = as_str(d);
                let conf = self.rules[rule as usize].confidence + 0.1;
                self.emit(
                    out,
                    rule,
                    s,
                    e,
                    conf,
                    &norm,
                    self.mask(Category::BankCard, &norm),
                    None,
                );
            }
            Cand::Birth(date) => self.birth_date(st, s, e, date, out),
            Cand::Tw => {
                let Some(rule) = self.rule_for(Scanner::TwPermit) else {
                    return;
                };
                let norm = as_str(d);
                let conf = self.rules[rule as usize].confidence + 0.1;
                self.emit(
                    out,
                    rule,
                    s,
                    e,
                    conf,
                    &norm,
                    self.mask(Category::TwPermit, &norm),
                    None,
                );
            }
            Cand::Age(v) => {
                let Some(rule) = self.rule_for(Scanner::Age) else {
                    return;
                };
                let conf = self.rules[rule as usize].confidence + 0.1;
                let norm = v.to_string();
                self.emit(
                    out,
                    rule,
                    s,
                    e,
                    conf,
                    &norm,
                    self.mask(Category::Age, &norm),
                    Some(AgeEvidence::Years(v)),
                );
            }
        }
    }

    /// A date at `s..e`: a birth date only with a birth context word or a hinted column.
    fn birth_date(&self, st: &St<'_>, s: usize, e: usize, d: NaiveDate, out: &mut Vec<Hit>) {
        let Some(rule) = self.rule_for(Scanner::BirthDate) else {
            return;
        };
        if d > self.opts.as_of || d.year() < 1900 {
            return;
        }
        if !self.birth_context(st, rule, s) && !born_after(st.text, e) {
            return;
        }
        let norm = super::iso_date(d);
        let conf = self.rules[rule as usize].confidence + 0.1;
        self.emit(
            out,
            rule,
            s,
            e,
            conf,
            &norm,
            self.mask(Category::BirthDate, &norm),
            Some(AgeEvidence::BirthDate(d)),
        );
    }

    /// Uppercase letter(s) + digits: student register numbers, passports, permits.
    fn letter_token(&self, st: &St<'_>, s: usize, e: usize, out: &mut Vec<Hit>) {
        let b = st.b;
        let t = &b[s..e];
        let n = t.len();
        let digits = |x: &[u8]| x.iter().all(u8::is_ascii_digit);
        let upper_no_io = |c: u8| c.is_ascii_uppercase() && c != b'I' && c != b'O';
        let norm = String::from_utf8_lossy(t).to_ascii_uppercase();
        // 全国学籍号: G/L + resident ID
        if n == 19 && matches!(t[0], b'G' | b'L') {
            if let Some(rule) = self.rule_for(Scanner::StudentId) {
                if let Some(birth) = validate::resident_id_18_bytes(&t[1..]) {
                    if birth <= self.opts.as_of
                        && (self.regions.contains(&t[1..]) || validate::province_prefix(&t[1..]))
                    {
                        let (pos, _) = self.context(st, rule, s, e);
                        let conf =
                            self.rules[rule as usize].confidence + if pos { 0.08 } else { 0.0 };
                        self.emit(
                            out,
                            rule,
                            s,
                            e,
                            conf,
                            &norm,
                            self.mask(Category::StudentId, &norm),
                            Some(AgeEvidence::BirthDate(birth)),
                        );
                    }
                }
            }
            return;
        }
        let (scanner, needs_ctx) = if n == 9
            && t[0] == b'E'
            && (digits(&t[1..]) || upper_no_io(t[1]) && digits(&t[2..]))
        {
            (Scanner::Passport, false)
        } else if n == 9 && t[0] == b'G' && digits(&t[1..]) {
            (Scanner::Passport, true)
        } else if n == 9
            && t[0] == b'C'
            && (digits(&t[1..]) || upper_no_io(t[1]) && digits(&t[2..]))
        {
            (Scanner::HkMacauPermit, false)
        } else if n == 9 && t[0] == b'W' && digits(&t[1..]) {
            (Scanner::HkMacauPermit, true)
        } else if (n == 9 || n == 11) && matches!(t[0], b'H' | b'M') && digits(&t[1..]) {
            (Scanner::HkMacauPermit, false)
        } else if n == 9 && t[0] == b'L' && digits(&t[1..]) {
            (Scanner::TwPermit, true)
        } else {
            return;
        };
        let Some(rule) = self.rule_for(scanner) else {
            return;
        };
        let r = &self.rules[rule as usize];
        let (pos, neg) = self.context(st, rule, s, e);
        if neg || (needs_ctx || r.required_context) && !pos {
            return;
        }
        let conf = r.confidence + if pos { 0.2 } else { 0.0 };
        self.emit(
            out,
            rule,
            s,
            e,
            conf,
            &norm,
            self.mask(r.category, &norm),
            None,
        );
    }

    /// School name: a suffix trigger extended back to a plausible proper-name start.
    fn school(&self, st: &St<'_>, m: M, out: &mut Vec<Hit>) {
        let Some(rule) = self.rule_for(Scanner::SchoolName) else {
            return;
        };
        let t = st.text;
        let (ss, se) = (m.start as usize, m.end as usize);
        let start = school_name_start(st, ss);
        let prefix = &t[start..ss];
        let pchars = prefix.chars().count();
        if pchars < 2 {
            return;
        }
        // 北京师范大学附属中学附属小学: the outer name is the school.
        let rest = &t[se..];
        if ["附属小学", "附属中学", "附属幼儿园", "附小", "附中"]
            .iter()
            .any(|w| rest.starts_with(w))
        {
            return;
        }
        const GENERIC: [&str; 28] = [
            "一名", "本册", "普通", "全国", "公立", "私立", "民办", "重点", "农村", "城市", "乡村",
            "附近", "当地", "这所", "那所", "某", "所有", "各级", "中小", "国内", "知名", "优质",
            "一所", "多所", "每所", "我们", "他们", "大学",
        ];
        if GENERIC.contains(&prefix)
            || prefix.ends_with("名")
            || prefix.ends_with("所") && pchars <= 3
        {
            return;
        }
        // The prefix must not be a numeral-only phrase (三所小学).
        if prefix
            .chars()
            .all(|c| is_cn_numeral(c) || one_of("所个名些几多", c))
        {
            return;
        }
        let rest = &t[se..];
        const SUBJECT: [&str; 21] = [
            "数学", "语文", "英语", "教材", "课本", "阶段", "教育", "老师", "教师", "学历", "文化",
            "毕业", "时期", "时代", "以上", "以下", "课程", "知识", "水平", "入学", "生活",
        ];
        if pchars < 4 && SUBJECT.iter().any(|w| rest.starts_with(w)) {
            return;
        }
        let (pos, neg) = self.context(st, rule, start, se);
        if neg {
            return;
        }
        // A bare 学校 (北京市十一学校, 成都七中育才学校) only after a school
        // word (学校：, 就读, school=), and not a school for adults.
        if &t[ss..se] == "学校" {
            const ADULT: [&str; 15] = [
                "驾驶", "驾", "党", "干部", "职业", "技工", "技术", "卫生", "护士", "警官", "警察",
                "军事", "行政", "财经", "管理",
            ];
            if !pos || prefix.starts_with('某') || ADULT.iter().any(|w| prefix.ends_with(w)) {
                return;
            }
        }
        let admin = prefix.chars().any(|c| one_of("省市区县镇乡州", c))
            || prefix.contains('第')
            || prefix.contains("附属");
        let mut conf = self.rules[rule as usize].confidence;
        if pos {
            conf += 0.08;
        }
        if admin {
            conf += 0.05;
        }
        // A pupil of a kindergarten, primary or lower-secondary school is a
        // child (lower confidence, like a grade) — unless the line speaks of
        // staff or of an adult's education history.
        let suffix = &t[m.start as usize..se];
        let pupil_school = matches!(
            suffix,
            "幼儿园" | "小学" | "附属小学" | "附小" | "托儿所" | "初级中学"
        );
        self.emit_school(t, rule, start, se, conf, pupil_school, out);
    }

    /// Emit the school name `t[start..se]`; a pupil's school (kindergarten,
    /// primary, lower secondary) is child evidence unless the line speaks
    /// of staff or of an adult's education history.
    #[allow(clippy::too_many_arguments)]
    fn emit_school(
        &self,
        t: &str,
        rule: u16,
        start: usize,
        se: usize,
        conf: f64,
        pupil: bool,
        out: &mut Vec<Hit>,
    ) {
        let evidence =
            (pupil && !adult_school_context(t, start, se)).then_some(AgeEvidence::ChildGrade);
        let name = &t[start..se];
        self.emit(
            out,
            rule,
            start,
            se,
            conf,
            name,
            self.mask(Category::SchoolName, name),
            evidence,
        );
    }

    /// Common school abbreviations: a proper name + Chinese numeral + 中 or
    /// 小 (北京四中, 实验二小, 杭州十四中, 一〇一中). Not generic words: the
    /// abbreviation must end the word (三中全会, 一小时, 十中八九 are not
    /// schools) and the name before it must be a plausible proper-name start.
    fn school_abbr(&self, st: &St<'_>, out: &mut Vec<Hit>) {
        let Some(rule) = self.rule_for(Scanner::SchoolName) else {
            return;
        };
        let b = st.b;
        if b.is_ascii() {
            return;
        }
        // Built once: building a searcher per value cost more than the search.
        static SUFFIXES: std::sync::LazyLock<[(memchr::memmem::Finder<'static>, bool); 2]> =
            std::sync::LazyLock::new(|| {
                [
                    (memchr::memmem::Finder::new("中".as_bytes()), false),
                    (memchr::memmem::Finder::new("小".as_bytes()), true),
                ]
            });
        // Short values (table cells): one byte loop finds both suffixes
        // (memchr or a substring searcher costs more to set up than that).
        if b.len() < super::SHORT {
            const ZHONG: &[u8] = "中".as_bytes();
            const XIAO: &[u8] = "小".as_bytes();
            for i in 0..b.len().saturating_sub(2) {
                let w = &b[i..i + 3];
                if w == ZHONG || w == XIAO {
                    self.school_abbr_at(st, rule, i, w == XIAO, out);
                }
            }
        } else {
            for (finder, pupil) in SUFFIXES.iter() {
                for ss in finder.find_iter(b) {
                    self.school_abbr_at(st, rule, ss, *pupil, out);
                }
            }
        }
    }

    /// A school abbreviation ending in the suffix 中 (or 小: `pupil`) at `ss`.
    fn school_abbr_at(&self, st: &St<'_>, rule: u16, ss: usize, pupil: bool, out: &mut Vec<Hit>) {
        let t = st.text;
        let se = ss + 3;
        // Chinese numerals right before the suffix (1–4 of them).
        let mut ns = ss;
        let mut k = 0;
        while let Some(c) = char_before(t, ns) {
            if k < 4
                && matches!(
                    c,
                    '〇' | '零'
                        | '一'
                        | '二'
                        | '三'
                        | '四'
                        | '五'
                        | '六'
                        | '七'
                        | '八'
                        | '九'
                        | '十'
                )
            {
                ns -= 3;
                k += 1;
            } else {
                break;
            }
        }
        if k == 0 || char_before(t, ns) == Some('第') {
            return;
        }
        // The abbreviation ends the word.
        let follow_ok = match char_at(t, se) {
            None => true,
            Some(c) if !is_cjk(c) => true,
            Some(c) if is_cn_numeral(c) => {
                let r = t[se..].trim_start_matches(is_cn_numeral);
                r.starts_with("年级") || r.starts_with('班')
            }
            Some(c) => {
                one_of("的读就是和与及在初高校分毕同老班届学生负任教工", c)
                    && !t[se..].starts_with("学")
                    && !t[se..].starts_with("生活")
                    && !t[se..].starts_with("生产")
            }
        };
        if !follow_ok {
            return;
        }
        let start = school_name_start(st, ns);
        let prefix = &t[start..ns];
        let pchars = prefix.chars().count();
        if !(2..=8).contains(&pchars)
            || prefix.chars().any(|c| {
                is_cn_numeral(c)
                    || "的了是与及在就读说被有去来到从把对向也还又才要会能将请您你我他她们这那个位名号班级先老师父母爸妈未无或但其每各某第届期次集高初"
                        .contains(c)
            })
        {
            return;
        }
        // a person's name after a person word (监护人黄一小), not a school
        const PERSON_WORDS: [&str; 7] =
            ["监护人", "家长", "联系人", "父亲", "母亲", "姓名", "老师"];
        if PERSON_WORDS.iter().any(|w| prefix.contains(w)) {
            return;
        }
        let (pos, neg) = self.context(st, rule, start, se);
        if neg {
            return;
        }
        let admin = prefix.chars().any(|c| one_of("省市区县镇乡州", c));
        let mut conf = self.rules[rule as usize].confidence - 0.1;
        if pos {
            conf += 0.08;
        }
        if admin {
            conf += 0.05;
        }
        self.emit_school(t, rule, start, se, conf, pupil, out);
    }

    /// 岁/周岁 after digits or Chinese numerals.
    fn age_sui(&self, st: &St<'_>, m: M, out: &mut Vec<Hit>) {
        let Some(rule) = self.rule_for(Scanner::Age) else {
            return;
        };
        let t = st.text;
        let b = st.b;
        let (ks, ke) = (m.start as usize, m.end as usize);
        let mut p = ks;
        if p > 0 && b[p - 1] == b' ' {
            p -= 1;
        }
        let Some((p, years)) = number_before(t, p).filter(|&(_, y)| y <= 120) else {
            return;
        };
        // Ranges (3-6岁, 3~6岁, 3至6岁) and product text (3岁以下, 3岁+).
        if let Some(c) = char_before(t, p) {
            if matches!(c, '-' | '~' | '～' | '至' | '到' | '—' | '－' | '、') {
                return;
            }
        }
        let rest = &t[ke..];
        const AFTER_NEG: [&str; 12] = [
            "以下",
            "以上",
            "以内",
            "及以下",
            "及以上",
            "至",
            "到",
            "-",
            "~",
            "～",
            "+",
            "月",
        ];
        if AFTER_NEG.iter().any(|w| rest.starts_with(w)) {
            return;
        }
        // Age thresholds in rules (满18岁方可申请, 未满14周岁的未成年人), not a person's age.
        if char_before(t, p) == Some('满') {
            let rest = rest.strip_prefix("周岁").unwrap_or(rest);
            const RULE_WORDS: [&str; 8] =
                ["方可", "才能", "才可", "可以", "即可", "后", "的", "者"];
            if RULE_WORDS.iter().any(|w| rest.starts_with(w)) {
                return;
            }
        }
        let (pos, neg) = self.context(st, rule, p, ke);
        if neg {
            return;
        }
        let conf = self.rules[rule as usize].confidence + if pos { 0.1 } else { 0.05 };
        let span = &t[p..ke];
        self.emit(
            out,
            rule,
            p,
            ke,
            conf,
            &years.to_string(),
            self.mask(Category::Age, span),
            Some(AgeEvidence::Years(years)),
        );
    }

    /// An infant's age in months: `3个月大`, `八个月的宝宝`, `18个月婴儿`,
    /// `6月龄`, `月龄：10`. A bare `N个月` is a duration (保修12个月, 工作3个月),
    /// so `个月` counts only before `大` or a baby word; at most 72 months.
    fn age_months(&self, st: &St<'_>, m: M, out: &mut Vec<Hit>) {
        let Some(rule) = self.rule_for(Scanner::Age) else {
            return;
        };
        let t = st.text;
        let (ks, ke) = (m.start as usize, m.end as usize);
        let rest = &t[ke..];
        let (s, e, months) = if t[ks..ke].starts_with('月') {
            // 月龄: a number right before (6月龄) or after (月龄：6, 月龄 10个月)
            if let Some((p, n)) = number_before(t, ks) {
                (p, ke, n)
            } else {
                let after = rest.trim_start_matches([':', '：', ' ', '=']);
                let q = ke + (rest.len() - after.len());
                let Some((qe, n)) = number_after(t, q) else {
                    return;
                };
                let qe = if t[qe..].starts_with("个月") {
                    qe + "个月".len()
                } else {
                    qe
                };
                (ks, qe, n)
            }
        } else {
            const BABY: [&str; 10] = [
                "大",
                "的宝宝",
                "的婴儿",
                "的孩子",
                "的小孩",
                "的女婴",
                "的男婴",
                "宝宝",
                "婴儿",
                "的宝贝",
            ];
            // 大促, 大额, 大幅: sales and amounts, not an age
            const NOT_AGE: [&str; 5] = ["大促", "大额", "大幅", "大单", "大型"];
            // a baby word right before: 宝宝八个月, 女儿已经10个月
            const BABY_BEFORE: [&str; 10] = [
                "宝宝", "婴儿", "孩子", "宝贝", "女儿", "儿子", "患儿", "女婴", "男婴", "小孩",
            ];
            const ADVERBS: [&str; 6] = ["已经", "今年", "现在", "刚满", "刚", "才"];
            let Some((p, n)) = number_before(t, ks) else {
                return;
            };
            let w = BABY.iter().find(|w| rest.starts_with(**w));
            if w.is_none() {
                let before = t[..p].trim_end_matches([' ', '已', '满']);
                let before = ADVERBS
                    .iter()
                    .find_map(|a| before.strip_suffix(a))
                    .unwrap_or(before);
                if !BABY_BEFORE.iter().any(|b| before.ends_with(b)) {
                    return;
                }
            }
            if NOT_AGE.iter().any(|w| rest.starts_with(w)) {
                return;
            }
            (
                p,
                if w == Some(&"大") {
                    ke + "大".len()
                } else {
                    ke
                },
                n,
            )
        };
        if !(1..=72).contains(&months) {
            return;
        }
        // ranges (3-6个月大) as for years
        if let Some(c) = char_before(t, s) {
            if matches!(c, '-' | '~' | '～' | '至' | '到' | '—' | '－' | '、') {
                return;
            }
        }
        let (_, neg) = self.context(st, rule, s, e);
        if neg {
            return;
        }
        let conf = self.rules[rule as usize].confidence + 0.05;
        let norm = format!("{months}个月");
        self.emit(
            out,
            rule,
            s,
            e,
            conf,
            &norm,
            self.mask(Category::Age, &t[s..e]),
            Some(AgeEvidence::Years(months / 12)),
        );
    }

    /// 出生日期：二〇一五年三月七日 (a date in Chinese numerals after a birth
    /// word; digit dates are handled by the token pass). Without a day, the
    /// last day of the month (as for 2015年3月).
    fn birth_cn(&self, st: &St<'_>, m: M, out: &mut Vec<Hit>) {
        let t = st.text;
        let mut p = m.end as usize;
        let mut steps = 0;
        while let Some(c) = char_at(t, p) {
            if steps < 3 && matches!(c, ' ' | ':' | '：' | '=' | '是' | '为' | '于') {
                p += c.len_utf8();
                steps += 1;
            } else {
                break;
            }
        }
        let s = p;
        let mut year = 0i32;
        for _ in 0..4 {
            let Some(c) = char_at(t, p) else { return };
            let Some(d) = validate::chinese_numeral(c.encode_utf8(&mut [0; 4])) else {
                return;
            };
            if c == '十' {
                return;
            }
            year = year * 10 + d as i32;
            p += c.len_utf8();
        }
        let Some(after_year) = t[p..].strip_prefix('年') else {
            return;
        };
        p = t.len() - after_year.len();
        let num_until = |p: usize, end: &[char]| -> Option<(u32, usize)> {
            let rest = &t[p..];
            let n = rest.find(|c: char| !validate::is_cn_numeral(c))?;
            let c = rest[n..].chars().next()?;
            if n == 0 || !end.contains(&c) {
                return None;
            }
            Some((validate::chinese_numeral(&rest[..n])?, p + n + c.len_utf8()))
        };
        let Some((month, pm)) = num_until(p, &['月']) else {
            return;
        };
        let (date, e) = match num_until(pm, &['日', '号']) {
            Some((day, pd)) => (NaiveDate::from_ymd_opt(year, month, day), pd),
            None => (
                NaiveDate::from_ymd_opt(year, month, 1)
                    .and_then(|f| f.checked_add_months(chrono::Months::new(1)))
                    .and_then(|d| d.pred_opt()),
                pm,
            ),
        };
        if let Some(d) = date {
            self.birth_date(st, s, e, d, out);
        }
    }

    /// 年龄：十二 (Chinese numerals after an age word; digits are handled by the token pass).
    fn age_word(&self, st: &St<'_>, m: M, rule: u16, out: &mut Vec<Hit>) {
        let t = st.text;
        let mut p = m.end as usize;
        if st.b.get(m.start as usize).is_some_and(u8::is_ascii) {
            return;
        }
        let mut steps = 0;
        while let Some(c) = char_at(t, p) {
            if steps < 3 && matches!(c, ' ' | ':' | '：' | '=' | '是' | '为') {
                p += c.len_utf8();
                steps += 1;
            } else {
                break;
            }
        }
        let s = p;
        let mut k = 0;
        while k < 3 {
            match char_at(t, p) {
                Some(c) if is_cn_numeral(c) => {
                    p += c.len_utf8();
                    k += 1;
                }
                _ => break,
            }
        }
        if k == 0 {
            return;
        }
        let Some(years) = chinese_numeral(&t[s..p]).filter(|y| *y <= 120) else {
            return;
        };
        let mut e = p;
        if t[p..].starts_with("周岁") {
            e += "周岁".len();
        } else if t[p..].starts_with('岁') {
            e += '岁'.len_utf8();
        } else if char_at(t, p).is_some_and(is_cjk) {
            return; // 年龄一栏 etc.
        }
        let conf = self.rules[rule as usize].confidence + 0.1;
        let span = &t[s..e];
        self.emit(
            out,
            rule,
            s,
            e,
            conf,
            &years.to_string(),
            self.mask(Category::Age, span),
            Some(AgeEvidence::Years(years)),
        );
    }

    /// Grades and classes: 三年级(2)班, 初二3班, 高一, 学前班.
    fn grade(&self, st: &St<'_>, m: M, out: &mut Vec<Hit>) {
        let Some(rule) = self.rule_for(Scanner::GradeClass) else {
            return;
        };
        let t = st.text;
        let (ks, ke) = (m.start as usize, m.end as usize);
        let kw = &t[ks..ke];
        let mut start = ks;
        let child;
        match kw {
            "年级" => {
                let Some(c) = char_before(t, ks) else { return };
                let g = if c.is_ascii_digit() {
                    if ks >= 2 && st.b[ks - 2].is_ascii_digit() {
                        return;
                    }
                    c as u32 - '0' as u32
                } else if let Some(v) = chinese_numeral(&c.to_string()) {
                    v
                } else {
                    return;
                };
                if !(1..=12).contains(&g) {
                    return;
                }
                // 初二年级 / 高一年级: the 初二 / 高一 trigger reports it whole
                if char_before(t, start - c.len_utf8()).is_some_and(|p| p == '初' || p == '高') {
                    return;
                }
                start -= c.len_utf8();
                let level = ["小学", "初中", "高中"]
                    .iter()
                    .position(|l| t[..start].ends_with(l))
                    .map_or(0, |i| i + 1);
                if level > 0 && !char_before(t, start - "小学".len()).is_some_and(is_cjk) {
                    start -= "小学".len();
                }
                child = match level {
                    1 => g <= 6,
                    2 => g <= 3,
                    3 => false,
                    _ => g <= 9,
                };
                if let Some(pc) = char_before(t, start) {
                    if matches!(pc, '适' | '合') {
                        return;
                    }
                }
            }
            "学前班" => child = true,
            _ => {
                // 初一..高三: only as a standalone grade
                let prev_ok = match char_before(t, ks) {
                    None => true,
                    Some(c) => !is_cjk(c) || one_of("读上在是升为级念学校园", c),
                };
                let next_ok = match char_at(t, ke) {
                    None => true,
                    Some(c) => {
                        !is_cjk(c)
                            || one_of("班学年下上（", c)
                            || is_cn_numeral(c) && t[ke + 3..].chars().take(3).any(|x| x == '班')
                    }
                };
                let class_follows = {
                    let r: String = t[ke..].chars().take(5).collect();
                    let r = r.trim_start_matches(['(', '（']);
                    let r = r.trim_start_matches(|c: char| c.is_ascii_digit() || is_cn_numeral(c));
                    let r = r.trim_start_matches([')', '）']);
                    r.starts_with('班') && t[ke..].len() - r.len() > 0
                };
                if !(prev_ok && next_ok || class_follows)
                    && !st.hints.contains(&Category::GradeClass)
                {
                    return;
                }
                child = kw.starts_with('初');
            }
        }
        // 初二年级: one grade, reported whole
        let ke = if kw != "年级" && t[ke..].starts_with("年级") {
            ke + "年级".len()
        } else {
            ke
        };
        // a subject, a book or a school notice, not a pupil's grade
        if kw != "学前班" && GRADE_NOT_PUPIL.iter().any(|w| t[ke..].starts_with(w)) {
            return;
        }
        // class: (3)班, 3班, 三班
        let mut e = ke;
        let rest = &t[ke..];
        let mut q = 0;
        let rb = rest.as_bytes();
        let open = rest.starts_with('(') || rest.starts_with('（');
        if open {
            q += rest.chars().next().unwrap().len_utf8();
        }
        let ds = q;
        while q < rb.len() && rb[q].is_ascii_digit() && q - ds < 2 {
            q += 1;
        }
        if q == ds {
            let mut k = 0;
            while k < 2 {
                match char_at(rest, q) {
                    Some(c) if is_cn_numeral(c) => {
                        q += c.len_utf8();
                        k += 1;
                    }
                    _ => break,
                }
            }
        }
        if q > ds {
            if open {
                if rest[q..].starts_with(')') || rest[q..].starts_with('）') {
                    q += rest[q..].chars().next().unwrap().len_utf8();
                } else {
                    q = usize::MAX;
                }
            }
            if q != usize::MAX && rest[q..].starts_with('班') {
                e = ke + q + '班'.len_utf8();
            }
        }
        let (pos, _) = self.context(st, rule, start, e);
        let conf = self.rules[rule as usize].confidence
            + if pos { 0.1 } else { 0.0 }
            + if e > ke { 0.05 } else { 0.0 };
        let span = &t[start..e];
        // A teacher's class is not a pupil's age evidence.
        let mut lo = start.saturating_sub(160);
        while !t.is_char_boundary(lo) {
            lo += 1;
        }
        let before = &t[lo..start];
        let before = before.rsplit('\n').next().unwrap_or(before);
        let teacher = ["老师", "教师", "班主任", "任教", "执教", "teacher"]
            .iter()
            .any(|w| before.contains(w));
        let child = child && !teacher;
        self.emit(
            out,
            rule,
            start,
            e,
            conf,
            span,
            self.mask(Category::GradeClass, span),
            child.then_some(AgeEvidence::ChildGrade),
        );
    }

    /// A kindergarten class right after `幼儿园` (`幼儿园大班`, `阳光幼儿园 中二班`,
    /// `幼儿园小（3）班`): a grade whose pupils are 2 to 6 years old. Without
    /// the 幼儿园 before it, 中班/大班 are also work shifts and casino words.
    fn kindergarten_class(&self, st: &St<'_>, m: M, out: &mut Vec<Hit>) {
        let Some(rule) = self.rule_for(Scanner::GradeClass) else {
            return;
        };
        let t = st.text;
        let ke = m.end as usize;
        if &t[m.start as usize..ke] != "幼儿园" {
            return;
        }
        let s = ke + usize::from(t[ke..].starts_with(' '));
        let mut cs = t[s..].char_indices();
        let Some((_, level)) = cs.next() else { return };
        if !one_of("托小中大", level) {
            return;
        }
        // 大班, 大二班, 大(2)班, 大（2）班
        let rest = &t[s + level.len_utf8()..];
        let inner = rest
            .trim_start_matches(['(', '（'])
            .trim_start_matches(|c: char| c.is_ascii_digit() || is_cn_numeral(c))
            .trim_start_matches([')', '）']);
        if !inner.starts_with('班') || rest.len() - inner.len() > 8 {
            return;
        }
        let e = t.len() - inner.len() + '班'.len_utf8();
        let span = &t[s..e];
        let conf = self.rules[rule as usize].confidence + 0.1;
        self.emit(
            out,
            rule,
            s,
            e,
            conf,
            span,
            self.mask(Category::GradeClass, span),
            Some(AgeEvidence::ChildGrade),
        );
    }

    /// Address: …省/市/区 … 路/街 … N号 (… 栋 单元 室).
    fn address(&self, st: &St<'_>, m: M, out: &mut Vec<Hit>) {
        let Some(rule) = self.rule_for(Scanner::Address) else {
            return;
        };
        let t = st.text;
        let b = st.b;
        let hs = m.start as usize;
        if hs == 0 || !b[hs - 1].is_ascii_digit() {
            return;
        }
        if out
            .iter()
            .rev()
            .take(8)
            .any(|h| h.category == Category::Address && h.start < hs && hs < h.end)
        {
            return;
        }
        let mut p = hs;
        let mut chars = 0;
        while chars < 40 {
            let Some(c) = char_before(t, p) else { break };
            if is_cjk(c) || c.is_ascii_digit() || matches!(c, '-' | '#' | '（' | '）') {
                p -= c.len_utf8();
                chars += 1;
            } else {
                break;
            }
        }
        let mut start = p;
        let span = &t[start..hs];
        const CUTS: [&str; 10] = [
            "家庭住址",
            "住址",
            "地址",
            "居住地",
            "户籍地",
            "居住在",
            "住在",
            "位于",
            "在",
            "于",
        ];
        let mut cut = 0;
        for (i, _) in span.char_indices() {
            if let Some(c) = CUTS.iter().find(|c| span[i..].starts_with(**c)) {
                cut = cut.max(i + c.len());
            }
        }
        start += cut;
        let span = &t[start..hs];
        let road = span
            .char_indices()
            .find(|(_, c)| one_of("路街道巷弄里村胡同", *c))
            .map(|(i, _)| i);
        let Some(road) = road else { return };
        if road == 0 || !span[..road].chars().any(|c| one_of("省市区县镇乡州旗", c)) {
            return;
        }
        // forward: 号 then 3栋2单元501室
        let mut e = m.end as usize;
        loop {
            let mut q = e;
            while q < b.len() && b[q].is_ascii_digit() {
                q += 1;
            }
            if q == e {
                break;
            }
            let rest = &t[q..];
            let unit = ["号楼", "栋", "幢", "单元", "楼", "层", "室", "号"]
                .iter()
                .find(|u| rest.starts_with(**u));
            match unit {
                Some(u) => e = q + u.len(),
                None => break,
            }
        }
        let (pos, _) = self.context(st, rule, start, e);
        let conf = self.rules[rule as usize].confidence + if pos { 0.15 } else { 0.0 };
        let val = &t[start..e];
        self.emit(
            out,
            rule,
            start,
            e,
            conf,
            val,
            self.mask(Category::Address, val),
            None,
        );
    }

    /// An address right after an address context word (住址：四川省成都市武侯区某某街道12号).
    fn address_after(&self, st: &St<'_>, m: M, rule: u16, base: usize, out: &mut Vec<Hit>) {
        let t = st.text;
        let p = Self::skip_labels(t, m.end as usize);
        if p - m.end as usize > 8 {
            return;
        }
        let mut e = p;
        let mut chars = 0;
        while chars < 60 {
            match char_at(t, e) {
                Some(c)
                    if is_cjk(c) || c.is_ascii_digit() || matches!(c, '-' | '#' | '（' | '）') =>
                {
                    e += c.len_utf8();
                    chars += 1;
                }
                _ => break,
            }
        }
        let span = &t[p..e];
        if chars < 6 || !span.chars().take(8).any(|c| one_of("省市区县州旗", c)) {
            return;
        }
        if !span.chars().any(|c| one_of("路街道巷弄村组号室镇乡", c)) {
            return;
        }
        if out[base..]
            .iter()
            .rev()
            .take(16)
            .any(|h| h.category == Category::Address && h.start < e && p < h.end)
        {
            return;
        }
        let conf = self.rules[rule as usize].confidence + 0.15;
        self.emit(
            out,
            rule,
            p,
            e,
            conf,
            span,
            self.mask(Category::Address, span),
            None,
        );
    }

    /// Parse a name at `p`; returns its end and whether it was "closed"
    /// (followed by a non-CJK character or a stop character).
    fn parse_name(t: &str, p: usize) -> Option<(usize, bool)> {
        let rest = t.get(p..)?;
        let mut q = p;
        if let Some(cs) = COMPOUND_SURNAMES.iter().find(|s| rest.starts_with(**s)) {
            q += cs.len();
        } else {
            let c = rest.chars().next()?;
            if !is_surname(c) {
                return None;
            }
            q += c.len_utf8();
        }
        let mut given = 0;
        while given < 2 {
            match char_at(t, q) {
                Some(c) if is_cjk(c) && !name_stop(c) => {
                    q += c.len_utf8();
                    given += 1;
                }
                _ => break,
            }
        }
        if given == 0 {
            return None;
        }
        let closed = match char_at(t, q) {
            None => true,
            Some(c) => !is_cjk(c) || name_stop(c),
        };
        Some((q, closed))
    }

    fn skip_labels(t: &str, mut p: usize) -> usize {
        const LABELS: [&str; 20] = [
            "姓名",
            "名字",
            "电话",
            "手机号",
            "手机",
            "联系电话",
            "联系方式",
            "是",
            "名叫",
            "叫",
            "\"name\"",
            "name",
            "\"phone\"",
            "phone",
            "mobile",
            "\"mobile\"",
            "Name",
            "Phone",
            "Mobile",
            "tel",
        ];
        let mut steps = 0;
        while steps < 10 {
            steps += 1;
            let rest = &t[p..];
            if let Some(c) = rest.chars().next() {
                if matches!(
                    c,
                    ' ' | ':'
                        | '：'
                        | '='
                        | '"'
                        | '\''
                        | '（'
                        | '('
                        | '）'
                        | ')'
                        | '，'
                        | ','
                        | '\t'
                        | '{'
                        | '_'
                        | '.'
                ) {
                    p += c.len_utf8();
                    continue;
                }
            }
            if let Some(l) = LABELS.iter().find(|l| rest.starts_with(**l)) {
                p += l.len();
                continue;
            }
            break;
        }
        p
    }

    /// A person name right after a name context word (姓名：张小明, name=李华).
    fn name_after(&self, st: &St<'_>, m: M, rule: u16, out: &mut Vec<Hit>) {
        let t = st.text;
        let kw = &t[m.start as usize..m.end as usize];
        let strong = matches!(
            kw,
            "姓名"
                | "姓 名"
                | "名字"
                | "学生姓名"
                | "联系人"
                | "患者"
                | "收件人"
                | "幼儿姓名"
                | "name"
                | "student_name"
                | "xm"
        ) || kw.eq_ignore_ascii_case("name")
            || kw.eq_ignore_ascii_case("student_name");
        let p = Self::skip_labels(t, m.end as usize);
        if p - m.end as usize > 12 {
            return;
        }
        let Some((e, closed)) = Self::parse_name(t, p) else {
            return;
        };
        if !closed && !strong {
            return;
        }
        let name = &t[p..e];
        const NOT_NAMES: [&str; 12] = [
            "成绩", "信息", "安全", "管理", "资料", "家长", "时间", "学习", "成长", "马上", "方便",
            "万一",
        ];
        if NOT_NAMES.iter().any(|w| name.starts_with(w)) {
            return;
        }
        // a surname and a title (张经理, 李老师, 王女士): not a name
        const TITLES: [&str; 12] = [
            "经理", "老师", "先生", "女士", "小姐", "师傅", "主任", "医生", "阿姨", "叔叔", "总",
            "工",
        ];
        // (a surname of one or two characters before a two-character title; one before 总/工)
        let n = name.chars().count();
        if TITLES
            .iter()
            .any(|w| name.ends_with(w) && n <= 2 * w.chars().count())
        {
            return;
        }
        let conf = self.rules[rule as usize].confidence + if strong { 0.15 } else { 0.0 }
            - if closed { 0.0 } else { 0.1 };
        self.emit(
            out,
            rule,
            p,
            e,
            conf,
            name,
            self.mask(Category::PersonName, name),
            None,
        );
    }

    /// Guardian keyword followed by a name or a mobile number.
    fn guardian(
        &self,
        st: &St<'_>,
        m: M,
        rule: u16,
        (base, tokens_end, at): (usize, usize, &mut usize),
        out: &mut Vec<Hit>,
    ) {
        let t = st.text;
        let p = Self::skip_labels(t, m.end as usize);
        if p - m.end as usize > 16 {
            return;
        }
        // A phone found by the token pass starting right there. Token hits
        // are in text order and guardian words come in text order: the walk
        // resumes where the last one stopped (`at`); a binary search over
        // ~100k hits of 100+ bytes per guardian word missed the cache at
        // every step. Should a label skip have run past a later word, search.
        let tok = &out[base..tokens_end];
        let mut i = *at - base;
        if i > 0 && tok[i - 1].start >= p {
            i = tok.partition_point(|h| h.start < p);
        } else {
            while i < tok.len() && tok[i].start < p {
                i += 1;
            }
        }
        *at = base + i;
        let phone = tok[i..]
            .iter()
            .take_while(|h| h.start <= p + 1)
            .position(|h| h.category == Category::CnMobile);
        let conf = self.rules[rule as usize].confidence;
        if let Some(j) = phone {
            self.emit_same_value(out, base + i + j, rule, conf);
            return;
        }
        if let Some((e, closed)) = Self::parse_name(t, p) {
            let kw = &t[m.start as usize..m.end as usize];
            if !closed && !matches!(kw, "监护人" | "guardian" | "jhr") {
                return;
            }
            let name = &t[p..e];
            self.emit(
                out,
                rule,
                p,
                e,
                conf,
                name,
                self.mask(Category::PersonName, name),
                None,
            );
            if let Some(nr) = self.rule_for(Scanner::PersonName) {
                let c = self.rules[nr as usize].confidence + 0.1;
                self.emit(
                    out,
                    nr,
                    p,
                    e,
                    c,
                    name,
                    self.mask(Category::PersonName, name),
                    None,
                );
            }
        }
    }

    /// E-mail around an `@`.
    fn email(&self, st: &St<'_>, at: usize, out: &mut Vec<Hit>) {
        let Some(rule) = self.rule_for(Scanner::Email) else {
            return;
        };
        let b = st.b;
        let lch =
            |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
        let mut s = at;
        while s > 0 && lch(b[s - 1]) && at - s < 64 {
            s -= 1;
        }
        while s < at && !b[s].is_ascii_alphanumeric() {
            s += 1;
        }
        if s == at {
            return;
        }
        let mut e = at + 1;
        while e < b.len()
            && (b[e].is_ascii_alphanumeric() || b[e] == b'.' || b[e] == b'-')
            && e - at < 255
        {
            e += 1;
        }
        while e > at + 1 && !b[e - 1].is_ascii_alphanumeric() {
            e -= 1;
        }
        let domain = &b[at + 1..e];
        let Some(dot) = domain.iter().rposition(|c| *c == b'.') else {
            return;
        };
        let tld = &domain[dot + 1..];
        if dot == 0 || tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
            return;
        }
        let norm = st.text[s..e].to_ascii_lowercase();
        let (pos, _) = self.context(st, rule, s, e);
        let conf = self.rules[rule as usize].confidence + if pos { 0.05 } else { 0.0 };
        self.emit(
            out,
            rule,
            s,
            e,
            conf,
            &norm,
            self.mask(Category::Email, &norm),
            None,
        );
    }
}

#[derive(Debug, Clone, Copy)]
enum Cand {
    Id18 {
        birth: NaiveDate,
        known_region: bool,
    },
    Id15 {
        birth: NaiveDate,
    },
    Mobile {
        prefix: usize,
    },
    Landline {
        ctx: bool,
    },
    Card,
    Birth(NaiveDate),
    Tw,
    Age(u32),
}

/// True when the text between a label and a value holds only what joins a
/// label to its value (spaces, quotes, one `=`/`:`/`：`, words without a
/// separator), not the start of another field.
fn labels_value(gap: &[u8]) -> bool {
    let gap = std::str::from_utf8(gap).unwrap_or("");
    let t = gap.trim_start_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'');
    let t = t
        .strip_prefix('=')
        .or_else(|| t.strip_prefix(':'))
        .or_else(|| t.strip_prefix('：'))
        .unwrap_or(t);
    !t.contains(['=', ':', '：', ',', '，', ';', '；', '&', '|'])
}

#[cfg(test)]
mod cut_tests {
    use super::*;

    /// The engine of the shipped packs.
    fn shipped_engine() -> Engine {
        Engine::new(
            crate::detect::EngineOptions::new(chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()),
            crate::fingerprint::Fingerprinter::new(b"t"),
        )
        .unwrap()
    }

    /// A fresh scan state over `text` (no hints).
    fn state(text: &str) -> St<'_> {
        St {
            text,
            b: text.as_bytes(),
            ms: Vec::new(),
            hints: &[],
            ctx_rules: 0,
            ctx_ends: vec![0; text.len() / 64 + 1],
            ms_block: Vec::new(),
        }
    }

    #[test]
    fn block_masks_match_the_byte_classes() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..2000 {
            let mut blk = [0u8; 64];
            for (k, c) in blk.iter_mut().enumerate() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // every byte value, and runs of the class boundaries
                *c = if round % 2 == 0 {
                    x as u8
                } else {
                    b"/09:@AZ[`az{\x7f\x80\xbf\xc0\xdf\xe0\xef\xf0\xff"[(x as usize + k) % 21]
                };
            }
            assert_eq!(block_masks(&blk), block_masks_bytes(&blk), "{blk:?}");
        }
    }

    #[test]
    fn mask_pass_equals_byte_loop() {
        let e = shipped_engine();
        assert!(e.mask_loop_ok);
        // Pieces: keywords in both cases, digits, letters, camelCase, CJK,
        // 2- and 4-byte characters, separators.
        let mut pieces: Vec<String> = e.kw_pats.clone();
        pieces.extend(e.kw_pats.iter().map(|p| p.to_ascii_uppercase()));
        for p in [
            " ",
            "\n",
            "=",
            ":",
            "：",
            "，",
            "-",
            ".",
            "/",
            "\"",
            "0",
            "13800138000",
            "2015",
            "110105201503071234",
            "abc",
            "userName",
            "AB",
            "G12345678901",
            "x",
            "é",
            "😀",
            "学",
            "的",
            "岁",
            "小学",
            "年级",
            "(",
            ")",
            "@",
            "_",
            "ABCDEFGHIJ",
            "fooBarBaz",
        ] {
            pieces.push(p.to_string());
        }
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let run = |text: &str| {
            let (mut a, mut b) = (state(text), state(text));
            let (mut ta, mut tb) = (Vec::new(), Vec::new());
            e.keywords_and_tokens_masks(&mut a, &mut ta);
            e.keywords_and_tokens_bytes(&mut b, &mut tb);
            let key = |st: &St<'_>| {
                st.ms
                    .iter()
                    .map(|m| (m.start, m.end, m.pid))
                    .collect::<Vec<_>>()
            };
            assert_eq!(key(&a), key(&b), "keyword matches differ in {text:?}");
            assert_eq!(ta, tb, "tokens differ in {text:?}");
            assert_eq!(a.ctx_ends, b.ctx_ends, "{text:?}");
            assert_eq!(a.ctx_rules, b.ctx_rules, "{text:?}");
        };
        for _ in 0..3000 {
            let mut text = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 700) as usize;
            while text.len() < len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.push_str(&pieces[(x % pieces.len() as u64) as usize]);
            }
            run(&text);
            // every cut of the start, so runs and characters straddle block edges
            for cut in 1..text.len().min(70) {
                if text.is_char_boundary(cut) {
                    run(&text[cut..]);
                }
            }
        }
    }

    #[test]
    fn parse_date_reads_each_form() {
        let d = |t: &str| parse_date(t.as_bytes(), 0).map(|(e, d)| (e, d.to_string()));
        let ok = |e: usize, s: &str| Some((e, s.to_string()));
        assert_eq!(d("2015-03-07 10:00"), ok(10, "2015-03-07"));
        assert_eq!(d("2015/03/07"), ok(10, "2015-03-07"));
        assert_eq!(d("2015.03.07,"), ok(10, "2015-03-07"));
        assert_eq!(d("2015-3-7"), ok(8, "2015-03-07"));
        assert_eq!(d("2015年3月7日"), ok(15, "2015-03-07"));
        // OCR spacing: one space on each side of 年/月/日, not kept after 日
        let t = "2015 年 3 月 7 日 公民";
        assert_eq!(d(t), ok(t.find(" 公").unwrap(), "2015-03-07"));
        let t = "2016 年 9 月";
        assert_eq!(d(t), ok(t.len(), "2016-09-30"));
        assert_eq!(d("2015 年度"), None);
        assert_eq!(d("2015  年3月"), None);
        assert_eq!(d("20150307"), ok(8, "2015-03-07"));
        assert_eq!(d("2015-02-30"), None);
        assert_eq!(d("2015-13-01"), None);
        assert_eq!(d("2015-03-071"), None);
        assert_eq!(d("2015-03/07"), None);
        assert_eq!(d("2015-0a-07"), None);
    }

    #[test]
    fn skip_clock_takes_only_a_clock() {
        let end = |t: &str| super::skip_clock(t.as_bytes(), 0);
        assert_eq!(end(" 04:25:10.770] x"), 13);
        assert_eq!(end("T04:25:10Z"), 9);
        assert_eq!(end(" 9:05 8岁"), 5);
        assert_eq!(end(" 10:30:15"), 9);
        // not clocks: left to the token pass
        assert_eq!(end(" 8岁"), 0);
        assert_eq!(end(" 12 岁"), 0);
        assert_eq!(end(" 10:3"), 0);
        assert_eq!(end(" 10:30:151"), 0);
        assert_eq!(end(" 10:30ab"), 0);
        assert_eq!(end(" 123:30"), 0);
        assert_eq!(end(" 10:30:15.123456789"), 19);
        // more than nanoseconds: not a clock's fraction (a phone, an ID)
        assert_eq!(end(" 10:30:15.13800138000"), 0);
    }

    #[test]
    fn skip_digits_lower_is_exact() {
        let naive = |b: &[u8], mut i: usize| {
            while i < b.len() && (b[i].is_ascii_digit() || b[i].is_ascii_lowercase()) {
                i += 1;
            }
            i
        };
        // every byte value at every position of a 17-byte window
        for v in 0..=255u8 {
            for p in 0..17 {
                let mut buf = *b"a0z9m5q1b2c3d4e5f";
                buf[p] = v;
                for start in 0..17 {
                    assert_eq!(
                        skip_digits_lower(&buf, start),
                        naive(&buf, start),
                        "{v} at {p}"
                    );
                }
            }
        }
        let mixed = "abc123Def 学生 xyz".as_bytes();
        assert_eq!(skip_digits_lower(mixed, 0), 6);
    }

    /// The bitmaps that decide where the automaton runs (first character,
    /// first two, first three) never hide a keyword: every pattern of the
    /// shipped packs, alone between separators, is found by the pass.
    #[test]
    fn prefilter_never_hides_a_keyword() {
        let e = shipped_engine();
        assert!(
            e.anchored_ok && e.kw_pats.len() > 100,
            "{}",
            e.kw_pats.len()
        );
        for (pid, p) in e.kw_pats.iter().enumerate() {
            for text in [format!("，{p}："), format!(" {p} "), p.clone()] {
                let mut st = state(&text);
                // Both passes (cells take the byte loop, chunks the masks).
                for masks in [false, true] {
                    st.ms.clear();
                    if masks {
                        e.keywords_and_tokens_masks(&mut st, &mut Vec::new());
                    } else {
                        e.keywords_and_tokens_bytes(&mut st, &mut Vec::new());
                    }
                    let s = text.find(p.as_str()).unwrap();
                    assert!(
                        st.ms.iter().any(|m| m.start as usize == s
                            && m.end as usize == s + p.len()
                            && e.kw_pats[m.pid as usize] == *p),
                        "pattern {pid} `{p}` not found in `{text}` (masks: {masks})"
                    );
                }
            }
        }
    }

    #[test]
    fn ctx_ends_in_is_exact() {
        let mut st = state("");
        st.ctx_ends = vec![0; 4];
        for set in [0usize, 5, 63, 64, 100, 127, 128, 200, 255] {
            st.ctx_ends.iter_mut().for_each(|w| *w = 0);
            st.ctx_ends[set / 64] |= 1 << (set % 64);
            for lo in 0..256 {
                for hi in lo..256 {
                    assert_eq!(
                        st.ctx_ends_in(lo, hi),
                        (lo..=hi).contains(&set),
                        "{set} {lo} {hi}"
                    );
                }
            }
        }
    }

    #[test]
    fn cut_first_covers_every_cut() {
        for c in CUTS {
            let first = c.chars().next().unwrap();
            assert!(CUT_FIRST.contains(first), "{c}");
        }
    }
}
