//! Validators: checksums, dates, region codes, number plans, Chinese numerals
//! and the surname list used for person names.

use chrono::NaiveDate;

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";

/// ISO 7064 MOD 11-2 check character for the first 17 digits.
pub fn mod11_2_check(first17: &[u8]) -> u8 {
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| (d - b'0') as u32 * w)
        .sum();
    CHECK[(sum % 11) as usize]
}

/// GB 11643 18-digit resident ID: ISO 7064 MOD 11-2 check digit and a valid
/// birth date. Returns the birth date when valid. (Region codes and "not in
/// the future" are checked by the engine, which knows the table and `as_of`.)
pub fn resident_id_18(s: &str) -> Option<NaiveDate> {
    resident_id_18_bytes(s.as_bytes())
}

/// [`resident_id_18`] over bytes (digits, last may be X/x).
pub fn resident_id_18_bytes(b: &[u8]) -> Option<NaiveDate> {
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if mod11_2_check(&b[..17]) != b[17].to_ascii_uppercase() {
        return None;
    }
    let y = num(&b[6..10]) as i32;
    if !(1900..=2100).contains(&y) {
        return None;
    }
    NaiveDate::from_ymd_opt(y, num(&b[10..12]), num(&b[12..14]))
}

/// Legacy 15-digit ID (before 1999): region, YYMMDD birth date in 19YY, sequence.
pub fn resident_id_15_bytes(b: &[u8]) -> Option<NaiveDate> {
    if b.len() != 15 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    NaiveDate::from_ymd_opt(1900 + num(&b[6..8]) as i32, num(&b[8..10]), num(&b[10..12]))
}

fn num(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |a, d| a * 10 + (d - b'0') as u32)
}

/// Parse ASCII digits (no sign); None when empty or not all digits or too long.
pub fn parse_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(num(b))
}

/// Mainland mobile number: 11 digits in a current number segment
/// (13x, 145-149, 15[0-35-9], 16[2567], 17[0-35-8], 18x, 19[0-35-9]).
pub fn mobile(s: &str) -> bool {
    mobile_bytes(s.as_bytes())
}

/// [`mobile`] over bytes.
pub fn mobile_bytes(b: &[u8]) -> bool {
    if b.len() != 11 || b[0] != b'1' || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let c = b[2];
    match b[1] {
        b'3' | b'8' => true,
        b'4' => matches!(c, b'0' | b'1' | b'4'..=b'9'),
        b'5' => c != b'4',
        b'6' => matches!(c, b'2' | b'5' | b'6' | b'7'),
        b'7' => matches!(c, b'0'..=b'3' | b'5'..=b'8'),
        b'9' => c != b'4',
        _ => false,
    }
}

/// Luhn check over ASCII digits.
pub fn luhn(b: &[u8]) -> bool {
    if b.len() < 2 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut sum = 0u32;
    for (i, d) in b.iter().rev().enumerate() {
        let mut v = (d - b'0') as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// Landline: area code (010, 02x, 0[3-9]xx) and a 7–8 digit local number not starting 0/1.
pub fn landline(area: &[u8], local: &[u8]) -> bool {
    let ok_area = match area.len() {
        3 => area[0] == b'0' && (area[1] == b'1' && area[2] == b'0' || area[1] == b'2'),
        4 => area[0] == b'0' && (b'3'..=b'9').contains(&area[1]),
        _ => false,
    };
    ok_area && (7..=8).contains(&local.len()) && (b'2'..=b'9').contains(&local[0])
}

/// The set of 6-digit administrative division codes ever valid (from
/// `detectors/regions.tsv`), as a bitset over 0..1_000_000.
pub struct Regions {
    bits: Vec<u64>,
    count: usize,
}

impl Regions {
    /// Parse the region table: lines `code<TAB>...`; `#` comments.
    pub fn parse(text: &str) -> Result<Regions, String> {
        let mut bits = vec![0u64; 1_000_000 / 64 + 1];
        let mut count = 0;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let code = line.split('\t').next().unwrap_or("");
            if code.len() != 6 {
                return Err(format!("line {}: region code must have 6 digits", n + 1));
            }
            let v = parse_u32(code.as_bytes())
                .ok_or_else(|| format!("line {}: region code is not numeric", n + 1))?;
            bits[v as usize / 64] |= 1 << (v % 64);
            count += 1;
        }
        if count == 0 {
            return Err("region table is empty".into());
        }
        Ok(Regions { bits, count })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the first 6 ASCII digits of `b` are a known region code.
    pub fn contains(&self, b: &[u8]) -> bool {
        if b.len() < 6 || !b[..6].iter().all(u8::is_ascii_digit) {
            return false;
        }
        let v = num(&b[..6]) as usize;
        self.bits[v / 64] & (1 << (v % 64)) != 0
    }
}

/// Province prefixes (first two digits) of GB/T 2260.
pub fn province_prefix(b: &[u8]) -> bool {
    if b.len() < 2 {
        return false;
    }
    matches!(
        num(&b[..2]),
        11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81 | 82
    )
}

/// Value of a Chinese numeral from 0 to 99 (零一二两三四五六七八九十 forms).
pub fn chinese_numeral(s: &str) -> Option<u32> {
    let d = |c: char| -> Option<u32> {
        Some(match c {
            '零' | '〇' => 0,
            '一' => 1,
            '二' | '两' => 2,
            '三' => 3,
            '四' => 4,
            '五' => 5,
            '六' => 6,
            '七' => 7,
            '八' => 8,
            '九' => 9,
            _ => return None,
        })
    };
    let cs: Vec<char> = s.chars().collect();
    match cs.as_slice() {
        [a] if *a == '十' => Some(10),
        [a] => d(*a),
        ['十', b] => Some(10 + d(*b)?),
        [a, '十'] => Some(d(*a)? * 10),
        [a, '十', b] => Some(d(*a)? * 10 + d(*b)?),
        _ => None,
    }
}

/// Whether `c` may appear in a Chinese numeral.
pub fn is_cn_numeral(c: char) -> bool {
    matches!(
        c,
        '零' | '〇' | '一' | '二' | '两' | '三' | '四' | '五' | '六' | '七' | '八' | '九' | '十'
    )
}

/// Common Chinese surnames (single character), covering the vast majority of the population.
pub const SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝";

/// Compound surnames.
pub const COMPOUND_SURNAMES: [&str; 10] = [
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐",
];

/// Whether `c` is a listed single-character surname (a bit per CJK unified
/// ideograph; the list is searched once, to build it).
pub fn is_surname(c: char) -> bool {
    const LO: u32 = 0x4E00;
    const HI: u32 = 0xA000;
    static BITS: std::sync::LazyLock<Vec<u64>> = std::sync::LazyLock::new(|| {
        let mut bits = vec![0u64; ((HI - LO) / 64) as usize];
        for s in SURNAMES.chars() {
            let i = s as u32 - LO;
            bits[(i / 64) as usize] |= 1 << (i % 64);
        }
        bits
    });
    let c = c as u32;
    if !(LO..HI).contains(&c) {
        return false;
    }
    let i = c - LO;
    BITS[(i / 64) as usize] & (1 << (i % 64)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn id_check_digit() {
        assert!(resident_id_18("11010519491231002X").is_some());
        assert!(resident_id_18("110105194912310021").is_none());
        assert!(resident_id_18("110105201503071235").is_some());
        // python-stdnum test_cn_ric / doctest numbers
        assert!(resident_id_18("360426199101010071").is_some());
        assert!(resident_id_18("110105201502301235").is_none());
    }

    #[test]
    fn surname_bitmap_is_the_list() {
        for c in SURNAMES.chars() {
            assert!(is_surname(c), "{c}");
        }
        let listed: std::collections::HashSet<char> = SURNAMES.chars().collect();
        for c in ('\u{4E00}'..='\u{9FFF}').chain("abc学生的中".chars()) {
            assert_eq!(is_surname(c), listed.contains(&c), "{c}");
        }
    }

    #[test]
    fn mobile_segments() {
        assert!(mobile("13812345678"));
        assert!(mobile("19912345678"));
        assert!(!mobile("12812345678"));
        assert!(!mobile("15412345678"));
        assert!(!mobile("1381234567"));
    }

    #[test]
    fn luhn_and_numerals() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
        assert_eq!(chinese_numeral("八"), Some(8));
        assert_eq!(chinese_numeral("十二"), Some(12));
        assert_eq!(chinese_numeral("二十"), Some(20));
        assert_eq!(chinese_numeral("三十五"), Some(35));
        assert_eq!(chinese_numeral("十十"), None);
    }

    #[test]
    fn regions_bitset() {
        let r = Regions::parse("# c\n110105\tx\t\t\n").unwrap();
        assert!(r.contains(b"110105201503071235"));
        assert!(!r.contains(b"110106201503071235"));
        assert!(Regions::parse("12345\n").is_err());
    }
}
