//! A deterministic, seeded, labelled corpus of child and adult personal
//! information in the shapes it takes in real Chinese systems: logs in
//! several styles (key=value, JSON lines, Chinese free text, OCR output with
//! noise), tables, and hard negatives (bad check digits, impossible dates,
//! IDs inside longer digit runs, timestamps, hex ids, order/invoice numbers,
//! product text such as 3岁以下禁用 / 保修3年, generic words such as
//! 小学生 / 小学数学 / 中学教材). Every line and cell carries its ground
//! truth. Used by the quality tests, the benchmarks and the demo.
//!
//! All values are synthetic: ID numbers are built from the region table with
//! valid check digits, people are generated with consistent ages at `as_of`.

use crate::detect::validate::{mod11_2_check, SURNAMES};
use crate::finding::Category;
use chrono::{Datelike, Duration, NaiveDate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How a corpus is generated.
#[derive(Debug, Clone)]
pub struct CorpusOptions {
    /// Seed: the same seed gives the same corpus, byte for byte.
    pub seed: u64,
    /// Reference date: children are under 14 at this date.
    pub as_of: NaiveDate,
    /// Share of log lines that carry personal information (the rest are
    /// ordinary application log lines); 1.0 = every line is a labelled case.
    pub pi_share: f64,
}

impl CorpusOptions {
    /// Every line a labelled case (the quality-test mix).
    pub fn new(seed: u64, as_of: NaiveDate) -> Self {
        CorpusOptions {
            seed,
            as_of,
            pi_share: 1.0,
        }
    }
}

/// One labelled value inside a line or cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub category: Category,
}

/// Log style of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    KeyValue,
    Json,
    FreeText,
    Ocr,
    Negative,
}

/// One generated line with its ground truth.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    pub text: String,
    pub spans: Vec<Span>,
    /// true: the line holds a child's PI with age evidence; false: only adults with evidence; null: no age evidence.
    pub child: Option<bool>,
    pub style: Style,
}

/// A generated person.
#[derive(Debug, Clone)]
pub struct Person {
    pub name: String,
    pub birth: NaiveDate,
    pub age: u32,
    pub id: String,
    pub mobile: String,
    pub child: bool,
}

/// A generated table with per-cell truth.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Category of each column's values (None: not PI).
    pub column_truth: Vec<Option<Category>>,
    /// Whether each row is a child's row.
    pub row_child: Vec<bool>,
}

const DISTRICTS: [&str; 18] = [
    "北京市朝阳区",
    "上海市浦东新区",
    "广州市天河区",
    "深圳市南山区",
    "杭州市西湖区",
    "成都市武侯区",
    "武汉市洪山区",
    "南京市鼓楼区",
    "西安市雁塔区",
    "重庆市渝中区",
    "长沙市岳麓区",
    "郑州市金水区",
    "太原市小店区",
    "自贡市自流井区",
    "江西省于都县",
    "天津市和平区",
    "合肥市蜀山区",
    "济南市历下区",
];
const ROADS: [&str; 10] = [
    "建国路",
    "人民路",
    "文一街",
    "解放大道",
    "中山路",
    "学府路",
    "长江路",
    "新华街",
    "友谊路",
    "光明巷",
];
const GIVEN: &str = "小明华伟强丽静敏杰涛磊洋勇艳娟军霞平刚英芳秀兰玉梅子涵浩宇欣怡梓萱一诺思雨博文俊熙佳琪晨阳泽嘉豪诗睿轩彤瑶航鹏飞婷雪峰志";
const CN_DIGITS: [&str; 10] = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"];

/// Chinese numeral for 0..=99.
pub fn cn_number(n: u32) -> String {
    match n {
        0..=9 => CN_DIGITS[n as usize].to_string(),
        10 => "十".into(),
        11..=19 => format!("十{}", CN_DIGITS[(n % 10) as usize]),
        _ if n % 10 == 0 => format!("{}十", CN_DIGITS[(n / 10) as usize]),
        _ => format!(
            "{}十{}",
            CN_DIGITS[(n / 10) as usize],
            CN_DIGITS[(n % 10) as usize]
        ),
    }
}

/// Full-width form (０-９, Ａ-Ｚ, ａ-ｚ) of the ASCII digits and letters of
/// `s`, as typed with a Chinese input method or printed in Chinese documents.
pub fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                char::from_u32(c as u32 - 0x20 + 0xFF00).unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

struct B {
    text: String,
    spans: Vec<Span>,
}

impl B {
    fn new() -> B {
        B {
            text: String::with_capacity(256),
            spans: Vec::new(),
        }
    }
    fn s(&mut self, t: &str) -> &mut Self {
        self.text.push_str(t);
        self
    }
    fn v(&mut self, t: &str, c: Category) -> &mut Self {
        let start = self.text.len();
        self.text.push_str(t);
        self.spans.push(Span {
            start,
            end: self.text.len(),
            category: c,
        });
        self
    }
    /// The same text labelled with two categories (a guardian's name is also a person name).
    fn v2(&mut self, t: &str, c1: Category, c2: Category) -> &mut Self {
        let start = self.text.len();
        self.text.push_str(t);
        self.spans.push(Span {
            start,
            end: self.text.len(),
            category: c1,
        });
        self.spans.push(Span {
            start,
            end: self.text.len(),
            category: c2,
        });
        self
    }
    fn line(self, child: Option<bool>, style: Style) -> Line {
        Line {
            text: self.text,
            spans: self.spans,
            child,
            style,
        }
    }
}

/// The corpus generator.
pub struct Generator {
    rng: StdRng,
    as_of: NaiveDate,
    regions: Vec<String>,
    line_no: u64,
    pi_share: f64,
}

impl Generator {
    pub fn new(opts: &CorpusOptions) -> Generator {
        let regions = crate::detect::pack::EMBEDDED_REGIONS
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split('\t').next())
            .filter(|c| c.len() == 6 && !c.ends_with("00"))
            .map(str::to_string)
            .collect::<Vec<_>>();
        Generator {
            rng: StdRng::seed_from_u64(opts.seed),
            as_of: opts.as_of,
            regions,
            line_no: 0,
            pi_share: opts.pi_share,
        }
    }

    fn pick<'a>(&mut self, xs: &'a [&'a str]) -> &'a str {
        xs[self.rng.gen_range(0..xs.len())]
    }

    fn name(&mut self) -> String {
        let sur: Vec<char> = SURNAMES.chars().take(80).collect();
        let given: Vec<char> = GIVEN.chars().collect();
        let mut n = String::new();
        if self.rng.gen_bool(0.02) {
            n.push_str("欧阳");
        } else {
            n.push(sur[self.rng.gen_range(0..sur.len())]);
        }
        for _ in 0..self.rng.gen_range(1..=2) {
            n.push(given[self.rng.gen_range(0..given.len())]);
        }
        n
    }

    fn id_for(&mut self, birth: NaiveDate) -> String {
        let region = self.regions[self.rng.gen_range(0..self.regions.len())].clone();
        let mut s = format!(
            "{}{}{:03}",
            region,
            birth.format("%Y%m%d"),
            self.rng.gen_range(0..1000)
        );
        let c = mod11_2_check(s.as_bytes()) as char;
        s.push(c);
        s
    }

    fn mobile(&mut self) -> String {
        const SEG: [&str; 14] = [
            "130", "131", "135", "138", "139", "150", "158", "166", "176", "177", "186", "188",
            "191", "199",
        ];
        let seg = self.pick(&SEG);
        format!("{}{:08}", seg, self.rng.gen_range(0..100_000_000u32))
    }

    /// A person; `child` chooses under 14 at as_of. Edge cases: exactly 14
    /// years old today (adult) and one day short of 14 (child) appear.
    pub fn person(&mut self, child: bool) -> Person {
        let a = self.as_of;
        let birth = if child {
            if self.rng.gen_bool(0.03) {
                // one day short of 14
                NaiveDate::from_ymd_opt(a.year() - 14, a.month(), a.day()).unwrap()
                    + Duration::days(1)
            } else {
                a - Duration::days(self.rng.gen_range(365 * 2..365 * 14 - 10))
            }
        } else if self.rng.gen_bool(0.03) {
            NaiveDate::from_ymd_opt(a.year() - 14, a.month(), a.day()).unwrap()
        } else {
            a - Duration::days(self.rng.gen_range(365 * 19..365 * 70))
        };
        let age = crate::detect::age_at(birth, a).unwrap() as u32;
        let id = self.id_for(birth);
        let mobile = self.mobile();
        let name = self.name();
        Person {
            name,
            birth,
            age,
            id,
            mobile,
            child,
        }
    }

    fn school(&mut self) -> String {
        let d = self.pick(&DISTRICTS).to_string();
        let n = self.rng.gen_range(1..=40);
        match self.rng.gen_range(0..11) {
            // Common abbreviations: 北京四中, 朝阳实验二小.
            9 => format!("{}{}中", &d[..6], cn_number(n)),
            10 => format!("{}实验{}小", &d[..6], cn_number(n % 5 + 1)),
            0 => format!("{d}实验小学"),
            1 => format!("{d}第{}中学", cn_number(n)),
            2 => format!("{d}第{n}中学"),
            3 => format!("{}外国语学校", d),
            4 => self
                .pick(&[
                    "北京师范大学附属中学",
                    "华东师范大学第二附属中学",
                    "南京师范大学附属小学",
                    "首都师范大学附属小学",
                ])
                .to_string(),
            5 => format!(
                "{}{}幼儿园",
                d,
                self.pick(&["阳光", "蓝天", "金色童年", "育英"])
            ),
            6 => format!("{}{}小学", d, self.pick(&ROADS)),
            7 => format!("{}{}初级中学", d, self.pick(&["育才", "新星", "城关"])),
            _ => format!(
                "{}{}",
                d,
                self.pick(&["九年一贯制学校", "特殊教育学校", "实验学校", "高级中学"])
            ),
        }
    }

    fn grade(&mut self, age: u32) -> (String, bool) {
        // age 6..=11 primary, 12..=13 junior
        let cls = self.rng.gen_range(1..=9);
        let class = match self.rng.gen_range(0..3) {
            0 => format!("{}班", cn_number(cls)),
            1 => format!("({cls})班"),
            _ => format!("{cls}班"),
        };
        if age >= 12 {
            let g = (age - 11).min(3);
            let s = if self.rng.gen_bool(0.5) {
                format!("初{}{}", cn_number(g), class)
            } else {
                format!("{}年级{}", cn_number(g + 6), class)
            };
            (s, true)
        } else {
            let g = age.saturating_sub(5).clamp(1, 6);
            (format!("{}年级{}", cn_number(g), class), true)
        }
    }

    fn address(&mut self) -> String {
        let d = self.pick(&DISTRICTS).to_string();
        let road = self.pick(&ROADS).to_string();
        let mut a = format!("{d}{road}{}号", self.rng.gen_range(1..300));
        if self.rng.gen_bool(0.5) {
            a.push_str(&format!(
                "{}栋{}单元{}室",
                self.rng.gen_range(1..30),
                self.rng.gen_range(1..6),
                self.rng.gen_range(101..2999)
            ));
        }
        a
    }

    fn ts(&mut self) -> String {
        let d = self.as_of - Duration::days(self.rng.gen_range(0..30));
        format!(
            "{} {:02}:{:02}:{:02}.{:03}",
            d.format("%Y-%m-%d"),
            self.rng.gen_range(0..24),
            self.rng.gen_range(0..60),
            self.rng.gen_range(0..60),
            self.rng.gen_range(0..1000)
        )
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[self.rng.gen_range(0..16)]))
            .collect()
    }

    fn printed_id(&mut self, id: &str) -> String {
        match self.rng.gen_range(0..12) {
            0 => format!("{} {} {}", &id[..6], &id[6..14], &id[14..]),
            1 => format!("{}-{}-{}", &id[..6], &id[6..14], &id[14..]),
            2 => id.to_ascii_lowercase(),
            3 => fullwidth(id),
            _ => id.to_string(),
        }
    }

    fn printed_mobile(&mut self, m: &str) -> String {
        match self.rng.gen_range(0..14) {
            0 => format!("+86 {} {} {}", &m[..3], &m[3..7], &m[7..]),
            1 => format!("{}-{}-{}", &m[..3], &m[3..7], &m[7..]),
            2 => format!("+86{m}"),
            3 => format!("0086-{m}"),
            4 => format!("{} {} {}", &m[..3], &m[3..7], &m[7..]),
            5 => fullwidth(m),
            _ => m.to_string(),
        }
    }

    fn birth_text(&mut self, d: NaiveDate) -> (String, String) {
        let ctx = self
            .pick(&[
                "出生日期：",
                "生日 ",
                "出生于",
                "birthday=",
                "dob: ",
                "csrq=",
                "出生年月日:",
            ])
            .to_string();
        let v = match self.rng.gen_range(0..6) {
            5 => fullwidth(&format!("{}年{}月{}日", d.year(), d.month(), d.day())),
            0 => d.format("%Y-%m-%d").to_string(),
            1 => format!("{}年{}月{}日", d.year(), d.month(), d.day()),
            2 => d.format("%Y/%m/%d").to_string(),
            3 => d.format("%Y%m%d").to_string(),
            _ => d.format("%Y.%m.%d").to_string(),
        };
        (ctx, v)
    }

    fn age_text(&mut self, age: u32) -> (String, String, String) {
        // (before, value, after) — the value is what the engine reports
        match self.rng.gen_range(0..9) {
            8 => ("年龄：".into(), fullwidth(&age.to_string()), String::new()),
            0 => ("年龄：".into(), age.to_string(), String::new()),
            1 => (
                "今年".into(),
                format!("{}岁", cn_number(age)),
                String::new(),
            ),
            2 => ("age=".into(), age.to_string(), String::new()),
            3 => (String::new(), format!("{age}岁"), String::new()),
            4 => (String::new(), format!("{age}周岁"), String::new()),
            5 => ("年龄: ".into(), cn_number(age), String::new()),
            6 => (String::new(), age.to_string(), " years old".into()),
            _ => ("年龄 ".into(), format!("{age}岁"), String::new()),
        }
    }

    /// Next line of the log corpus.
    pub fn next_line(&mut self) -> Line {
        self.line_no += 1;
        if self.pi_share < 1.0 && !self.rng.gen_bool(self.pi_share.max(0.0)) {
            return self.plain_line();
        }
        let r = self.rng.gen_range(0..100);
        match r {
            0..=17 => self.kv_line(true),
            18..=27 => self.kv_line(false),
            28..=42 => self.json_line(true),
            43..=49 => self.json_line(false),
            50..=64 => self.free_line(true),
            65..=69 => self.free_line(false),
            70..=74 => self.ocr_line(),
            75..=77 => self.misc_line(),
            _ => self.negative_line(),
        }
    }

    fn kv_line(&mut self, child: bool) -> Line {
        use Category::*;
        let p = self.person(child);
        let mut b = B::new();
        let ts = self.ts();
        b.s(&format!(
            "{ts} INFO [{}] svc=enroll uid={} ",
            self.hex(8),
            self.rng.gen_range(1000..999999)
        ));
        b.s("name=").v(&p.name, PersonName).s(" ");
        let mut evidence = false;
        if self.rng.gen_bool(0.8) {
            let key = self.pick(&["idNo", "id_card", "sfzh", "certNo"]);
            let id = self.printed_id(&p.id);
            b.s(&format!("{key}=")).v(&id, CnResidentId).s(" ");
            evidence = true;
        }
        if self.rng.gen_bool(0.6) {
            let key = self.pick(&["phone", "mobile", "tel"]);
            let m = self.printed_mobile(&p.mobile);
            b.s(&format!("{key}=")).v(&m, CnMobile).s(" ");
        }
        if self.rng.gen_bool(0.4) || !evidence {
            b.s("age=").v(&p.age.to_string(), Age).s(" ");
            evidence = true;
        }
        if child && self.rng.gen_bool(0.5) {
            let s = self.school();
            b.s("school=").v(&s, SchoolName).s(" ");
        }
        if self.rng.gen_bool(0.3) {
            let (c, v) = self.birth_text(p.birth);
            let c = if c.contains('=') {
                c
            } else {
                "birthday=".into()
            };
            b.s(&c).v(&v, BirthDate).s(" ");
        }
        if self.rng.gen_bool(0.5) {
            b.s(&format!(
                "order_id={} ",
                self.rng.gen_range(10_000_000_000u64..99_999_999_999)
            ));
        }
        b.s(&format!(
            "trace={} cost={}ms",
            self.hex(16),
            self.rng.gen_range(1..900)
        ));
        let _ = evidence;
        b.line(Some(child), Style::KeyValue)
    }

    fn json_line(&mut self, child: bool) -> Line {
        use Category::*;
        let p = self.person(child);
        let ts = self.ts();
        let mut b = B::new();
        b.s(&format!(
            "{{\"ts\":\"{ts}\",\"level\":\"info\",\"event\":\"profile.update\",\"req\":\"{}\",",
            self.hex(32)
        ));
        b.s("\"user\":{\"name\":\"").v(&p.name, PersonName).s("\",");
        b.s("\"idNo\":\"").v(&p.id, CnResidentId).s("\",");
        if self.rng.gen_bool(0.5) {
            let (_, v) = self.birth_text(p.birth);
            b.s("\"birthday\":\"").v(&v, BirthDate).s("\",");
        }
        if self.rng.gen_bool(0.4) {
            b.s("\"age\":").v(&p.age.to_string(), Age).s(",");
        }
        b.s("\"mobile\":\"").v(&p.mobile, CnMobile).s("\"");
        if child && self.rng.gen_bool(0.6) {
            let s = self.school();
            b.s(",\"school\":\"").v(&s, SchoolName).s("\"");
            if p.age >= 6 {
                let (g, _) = self.grade(p.age);
                b.s(",\"grade\":\"").v(&g, GradeClass).s("\"");
            }
        }
        b.s("}");
        if child && self.rng.gen_bool(0.5) {
            let g = self.person(false);
            b.s(",\"guardian\":{\"name\":\"")
                .v2(&g.name, Guardian, PersonName)
                .s("\",\"phone\":\"")
                .v(&g.mobile, CnMobile)
                .s("\"}");
        }
        if self.rng.gen_bool(0.3) {
            let e = format!(
                "{}{}@example.com",
                self.pick(&["xiaoming", "li.hua", "zhang_w", "user"]),
                self.rng.gen_range(1..999)
            );
            b.s(",\"email\":\"").v(&e, Email).s("\"");
        }
        b.s(&format!(",\"latency_ms\":{}}}", self.rng.gen_range(1..500)));
        b.line(Some(child), Style::Json)
    }

    fn free_line(&mut self, child: bool) -> Line {
        use Category::*;
        let p = self.person(child);
        let mut b = B::new();
        let ts = self.ts();
        b.s(&format!("[{ts}] 备注："));
        if child {
            let g = self.person(false);
            match self.rng.gen_range(0..3) {
                0 => {
                    b.s("监护人")
                        .v2(&g.name, Guardian, PersonName)
                        .s("（电话")
                        .v(&g.mobile, CnMobile)
                        .s("）为其办理手续，");
                }
                1 => {
                    b.s("家长电话")
                        .v2(&g.mobile, Guardian, CnMobile)
                        .s("，学生姓名")
                        .v(&p.name, PersonName)
                        .s("，");
                }
                _ => {
                    b.s("学生姓名：")
                        .v(&p.name, PersonName)
                        .s("，母亲")
                        .v2(&g.name, Guardian, PersonName)
                        .s("，");
                }
            }
            if p.age <= 2 && self.rng.gen_bool(0.5) {
                // an infant's age in months
                let a = self.as_of;
                let months = (a.year() - p.birth.year()) * 12 + a.month() as i32
                    - p.birth.month() as i32
                    - i32::from(a.day() < p.birth.day());
                b.s("宝宝").v(&format!("{months}个月大"), Age).s("，");
            } else {
                let (bef, v, aft) = self.age_text(p.age);
                b.s("孩子").s(&bef).v(&v, Age).s(&aft).s("，");
            }
            if self.rng.gen_bool(0.7) {
                let s = self.school();
                b.s(self.pick(&["就读于", "在", "现就读", "学校："]))
                    .v(&s, SchoolName);
                if s.ends_with("幼儿园") && (2..=6).contains(&p.age) && self.rng.gen_bool(0.6) {
                    let class = match p.age {
                        2 => "托班",
                        3 => "小班",
                        4 => "中班",
                        _ => "大班",
                    };
                    b.v(class, GradeClass);
                } else if p.age >= 6 && self.rng.gen_bool(0.6) {
                    let (gr, _) = self.grade(p.age);
                    b.v(&gr, GradeClass);
                }
                b.s("，");
            }
            if self.rng.gen_bool(0.2) {
                // a birth told after the date, without a birth word before it
                let d = p.birth;
                b.s("于")
                    .v(
                        &format!("{}年{}月{}日", d.year(), d.month(), d.day()),
                        BirthDate,
                    )
                    .s("出生，");
            }
            if self.rng.gen_bool(0.5) {
                b.s("身份证号").v(&p.id, CnResidentId).s("，");
            }
            if self.rng.gen_bool(0.3) {
                let a = self.address();
                b.s("家庭住址：").v(&a, Address).s("，");
            }
            if self.rng.gen_bool(0.15) {
                let m = self.pick(&["留守儿童", "孤儿", "事实无人抚养儿童", "困境儿童"]);
                b.s("属于").v(m, VulnerableChild).s("，");
            }
            b.s("已办理入学手续。");
        } else {
            b.s("客户").v(&p.name, PersonName).s("，");
            if self.rng.gen_bool(0.2) {
                let sch = self.school();
                b.s("毕业于").v(&sch, SchoolName).s("，");
            }
            let (bef, v, aft) = self.age_text(p.age);
            b.s(&bef)
                .v(&v, Age)
                .s(&aft)
                .s("，联系电话")
                .v(&p.mobile, CnMobile);
            if self.rng.gen_bool(0.5) {
                b.s("，身份证").v(&p.id, CnResidentId);
            }
            b.s("，已完成实名认证。");
        }
        b.line(Some(child), Style::FreeText)
    }

    fn ocr_line(&mut self) -> Line {
        use Category::*;
        let child = self.rng.gen_bool(0.7);
        let p = self.person(child);
        let mut b = B::new();
        b.s("| 姓 名 ").s(self.pick(&[":", "：", " "])).s(" ");
        b.v(&p.name, PersonName).s("  性别 男 | ");
        let v = if self.rng.gen_bool(0.3) {
            // OCR spacing around 年/月/日
            let d = p.birth;
            format!("{} 年 {} 月 {} 日", d.year(), d.month(), d.day())
        } else {
            self.birth_text(p.birth).1
        };
        b.s("出生日期 ").v(&v, BirthDate).s(" |");
        let spaced = format!("{} {} {}", &p.id[..6], &p.id[6..14], &p.id[14..]);
        b.s(" 公民身份号码 ").v(&spaced, CnResidentId).s(" ");
        if self.rng.gen_bool(0.5) {
            let a = self.address();
            b.s(" 住址 ").v(&a, Address);
        }
        b.s(&format!(" ~{}~", self.pick(&["丨", "l", "I", "!", "_"])));
        b.line(Some(child), Style::Ocr)
    }

    /// An ordinary application log line without personal information.
    fn plain_line(&mut self) -> Line {
        const MSGS: [&str; 12] = [
            "用户登录成功",
            "订单创建完成",
            "支付回调处理中",
            "库存同步任务开始",
            "缓存刷新完成",
            "请求处理超时，准备重试",
            "消息队列消费完成",
            "定时任务执行结束",
            "配置中心拉取配置成功",
            "文件上传成功，等待审核",
            "推荐服务返回空结果，使用默认列表",
            "课程目录更新，新增三门选修课",
        ];
        let mut b = B::new();
        let ts = self.ts();
        let msg = self.pick(&MSGS);
        match self.rng.gen_range(0..3) {
            0 => {
                let (th, tr) = (self.hex(8), self.hex(16));
                b.s(&format!(
                    "{ts} INFO [{th}] com.example.app.Service - {msg} orderId={} cost={}ms traceId={tr}",
                    self.rng.gen_range(1_000_000_000u64..9_999_999_999),
                    self.rng.gen_range(1..900)
                ));
            }
            1 => {
                b.s(&format!(
                    "{{\"ts\":\"{ts}\",\"level\":\"info\",\"msg\":\"{msg}\",\"uid\":{},\"path\":\"/api/v1/items/{}\",\"status\":200,\"latency_ms\":{}}}",
                    self.rng.gen_range(1..10_000_000),
                    self.rng.gen_range(1..1_000_000),
                    self.rng.gen_range(1..999)
                ));
            }
            _ => {
                b.s(&format!(
                    "[{ts}] WARN 审核备注：{msg}，共处理{}条记录，失败{}条，耗时{}毫秒，节点 node-{}",
                    self.rng.gen_range(1..100_000),
                    self.rng.gen_range(0..50),
                    self.rng.gen_range(1..60_000),
                    self.rng.gen_range(1..64)
                ));
            }
        }
        b.line(None, Style::Negative)
    }

    /// Other shapes: Chinese keys, bare CSV-like records, teachers with classes.
    fn misc_line(&mut self) -> Line {
        use Category::*;
        let mut b = B::new();
        let ts = self.ts();
        match self.rng.gen_range(0..3) {
            0 => {
                let child = self.rng.gen_bool(0.6);
                let p = self.person(child);
                b.s(&format!("{ts} 登记 姓名="))
                    .v(&p.name, PersonName)
                    .s(" 身份证号=")
                    .v(&p.id, CnResidentId);
                b.s(" 手机=")
                    .v(&p.mobile, CnMobile)
                    .s(" 年龄=")
                    .v(&p.age.to_string(), Age);
                b.line(Some(child), Style::KeyValue)
            }
            1 => {
                let child = self.rng.gen_bool(0.6);
                let p = self.person(child);
                let m = self.printed_mobile(&p.mobile);
                b.s(&format!(
                    "{ts},{},{},",
                    self.rng.gen_range(1..99999),
                    p.name
                ))
                .v(&p.id, CnResidentId)
                .s(",")
                .v(&m, CnMobile);
                b.s(&format!(",{}", self.pick(&["A", "B", "C"])));
                b.line(Some(child), Style::KeyValue)
            }
            _ => {
                let p = self.person(false);
                let age = self.rng.gen_range(6..=13);
                let (g, _) = self.grade(age);
                let sch = self.school();
                b.s(&format!("{ts} 班主任"))
                    .v(&p.name, PersonName)
                    .s("老师，手机")
                    .v(&p.mobile, CnMobile)
                    .s("，在")
                    .v(&sch, SchoolName)
                    .s("负责")
                    .v(&g, GradeClass)
                    .s("的教学工作");
                b.line(None, Style::FreeText)
            }
        }
    }

    fn negative_line(&mut self) -> Line {
        let mut b = B::new();
        let ts = self.ts();
        b.s(&format!("{ts} "));
        let adult = self.rng.gen_bool(0.5);
        let p = self.person(adult);
        match self.rng.gen_range(0..14) {
            0 => {
                // bad check digit
                let mut id = p.id.clone().into_bytes();
                let c = id[17];
                id[17] = if c == b'0' {
                    b'1'
                } else if c == b'X' {
                    b'2'
                } else {
                    b'0'
                };
                b.s(&format!(
                    "WARN 订单号 {} 已支付 amount=12.50",
                    String::from_utf8(id).unwrap()
                ));
            }
            1 => {
                // impossible date with a valid check digit
                let mut s = format!(
                    "{}{}{:03}",
                    &p.id[..6],
                    "20150230",
                    self.rng.gen_range(0..1000)
                );
                s.push(mod11_2_check(s.as_bytes()) as char);
                b.s(&format!("INFO batch={s} rows=3"));
            }
            2 => {
                // ID inside a longer digit run
                b.s(&format!(
                    "DEBUG span={}{} seq={}7",
                    self.rng.gen_range(1..9),
                    p.id.trim_end_matches('X'),
                    p.mobile
                ));
            }
            3 => {
                b.s(&format!(
                    "INFO ts_ms={} epoch={} pid={}",
                    1_717_200_000_000u64 + self.rng.gen_range(0..1_000_000_000u64),
                    1_717_200_000u64 + self.rng.gen_range(0..9_000_000),
                    self.rng.gen_range(100..99999)
                ));
            }
            4 => {
                b.s(&format!(
                    "DEBUG req={} obj=a{}f sha={}",
                    self.hex(24),
                    p.mobile,
                    self.hex(40)
                ));
            }
            5 => {
                b.s(&format!(
                    "INFO 发票号码 {:010} 发票代码 0{:011} 金额 {}.00元",
                    self.rng.gen_range(0..9_999_999_999u64),
                    self.rng.gen_range(0..99_999_999_999u64),
                    self.rng.gen_range(10..9999)
                ));
            }
            6 => {
                b.s(self.pick(&[
                    "商品说明：本品含小零件，3岁以下儿童禁用，保修3年",
                    "玩具适用年龄 3-6岁，建议8岁以上在成人监护下使用",
                    "适合3~6岁儿童，整机保修3年，电池保修1年",
                    "商品标签：6岁以上 适用",
                ]));
            }
            7 => {
                b.s(self.pick(&[
                    "热销：小学数学同步练习册，中学教材全解，小学生课外读物",
                    "面向小学生的编程课程上线，适合中学生和小学生",
                    "他上小学了，在读小学数学提高班",
                    "一名小学生在操场上跑步",
                ]));
            }
            8 => {
                // invalid mobile segments and order numbers
                b.s(&format!(
                    "INFO order_no=12{:09} sku=154{:08} 快递单号 SF{}",
                    self.rng.gen_range(0..999_999_999),
                    self.rng.gen_range(0..999_999_999),
                    self.rng.gen_range(1_000_000_000u64..9_999_999_999)
                ));
            }
            9 => {
                b.s(&format!(
                    "INFO uuid={}-{}-{}-{}-{} version=1.3.{}",
                    self.hex(8),
                    self.hex(4),
                    self.hex(4),
                    self.hex(4),
                    self.hex(12),
                    self.rng.gen_range(0..99)
                ));
            }
            10 => {
                // a birth date in the future inside a valid-looking ID
                let fut = self.as_of + Duration::days(self.rng.gen_range(30..3000));
                let mut s = format!(
                    "{}{}{:03}",
                    &p.id[..6],
                    fut.format("%Y%m%d"),
                    self.rng.gen_range(0..1000)
                );
                s.push(mod11_2_check(s.as_bytes()) as char);
                b.s(&format!("INFO voucher {s} issued"));
            }
            11 => {
                b.s(&format!(
                    "INFO 创建时间 {} 更新时间 {}",
                    self.ts(),
                    self.ts()
                ));
            }
            12 => {
                b.s(&format!(
                    "GET /api/v1/items?page={}&size=20 200 {}ms ip=10.{}.{}.{}",
                    self.rng.gen_range(1..99),
                    self.rng.gen_range(1..999),
                    self.rng.gen_range(0..255),
                    self.rng.gen_range(0..255),
                    self.rng.gen_range(0..255)
                ));
            }
            _ => {
                b.s("天气晴朗，家长会下周举行，正月初一放假，价格高一点也可以接受");
            }
        }
        b.line(None, Style::Negative)
    }

    /// A table of students (and some adults) with hinted columns.
    pub fn table(&mut self, rows: usize) -> Table {
        use Category::*;
        let columns: Vec<String> = [
            "id",
            "xm",
            "sfzh",
            "csrq",
            "nl",
            "xxmc",
            "nj",
            "jhrxm",
            "jhrdh",
            "jtzz",
            "order_no",
            "created_at",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let column_truth = vec![
            None,
            Some(PersonName),
            Some(CnResidentId),
            Some(BirthDate),
            Some(Age),
            Some(SchoolName),
            Some(GradeClass),
            Some(Guardian),
            Some(CnMobile),
            Some(Address),
            None,
            None,
        ];
        let mut out = Vec::with_capacity(rows);
        let mut row_child = Vec::with_capacity(rows);
        for i in 0..rows {
            let child = self.rng.gen_bool(0.8);
            let p = self.person(child);
            let g = self.person(false);
            let (grade, _) = if child && p.age >= 6 {
                self.grade(p.age)
            } else {
                ("高一".into(), false)
            };
            let grade_num = if child && p.age >= 6 {
                p.age.saturating_sub(5).clamp(1, 9)
            } else {
                10
            };
            let _ = grade;
            let mut order = format!(
                "{}{}",
                self.rng.gen_range(10_000_000u64..99_999_999),
                self.rng.gen_range(1_000_000_000u64..9_999_999_999)
            );
            // make sure an order number never passes the ID check by accident
            if crate::detect::validate::resident_id_18(&order).is_some() {
                order.replace_range(17..18, if &order[17..] == "0" { "1" } else { "0" });
            }
            out.push(vec![
                (i + 1).to_string(),
                p.name.clone(),
                p.id.clone(),
                p.birth.format("%Y-%m-%d").to_string(),
                p.age.to_string(),
                // adults in the table (e.g. parents' own records) have no school or grade
                if child { self.school() } else { String::new() },
                if child {
                    grade_num.to_string()
                } else {
                    String::new()
                },
                g.name.clone(),
                g.mobile.clone(),
                self.address(),
                order,
                self.ts(),
            ]);
            row_child.push(child);
        }
        Table {
            columns,
            rows: out,
            column_truth,
            row_child,
        }
    }
}

/// Precision/recall counters for one category.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Score {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
}

impl Score {
    pub fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }
}

/// Quality of the engine on a set of lines: per-category scores and child-line figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Quality {
    pub per_category: std::collections::BTreeMap<String, Score>,
    pub child_lines: u64,
    pub child_lines_flagged: u64,
    pub adult_lines: u64,
    pub adult_lines_flagged_child: u64,
}

impl Quality {
    pub fn score(&self, c: Category) -> Score {
        self.per_category
            .get(c.as_str())
            .copied()
            .unwrap_or_default()
    }
    pub fn child_recall(&self) -> f64 {
        self.child_lines_flagged as f64 / self.child_lines.max(1) as f64
    }
    pub fn adult_false_child_rate(&self) -> f64 {
        self.adult_lines_flagged_child as f64 / self.adult_lines.max(1) as f64
    }
}

/// Score the engine's hits for one line against its truth (a hit matches a
/// truth span of the same category when they overlap).
pub fn score_line(
    engine: &crate::detect::Engine,
    text: &str,
    spans: &[Span],
    child: Option<bool>,
    q: &mut Quality,
    misses: &mut Vec<String>,
) {
    let mut hits = Vec::new();
    engine.scan_text(text, &mut hits);
    let mut matched = vec![false; spans.len()];
    for h in &hits {
        let e = q
            .per_category
            .entry(h.category.as_str().to_string())
            .or_default();
        let m = spans
            .iter()
            .position(|s| s.category == h.category && s.start < h.end && h.start < s.end);
        match m {
            Some(i) => {
                if !matched[i] {
                    e.tp += 1;
                    matched[i] = true;
                }
            }
            None => {
                e.fp += 1;
                if misses.len() < 200 {
                    misses.push(format!("FP {}: {}", h.category, text));
                }
            }
        }
    }
    for (i, s) in spans.iter().enumerate() {
        if !matched[i] {
            q.per_category
                .entry(s.category.as_str().to_string())
                .or_default()
                .fn_ += 1;
            if misses.len() < 200 {
                misses.push(format!(
                    "FN {} `{}`: {}",
                    s.category,
                    &text[s.start..s.end],
                    text
                ));
            }
        }
    }
    let flagged = engine.infer_child(hits.iter().filter_map(|h| h.evidence.as_ref()));
    match child {
        Some(true) => {
            q.child_lines += 1;
            if flagged == Some(true) {
                q.child_lines_flagged += 1;
            } else if misses.len() < 200 {
                misses.push(format!("CHILD-MISS: {text}"));
            }
        }
        _ => {
            q.adult_lines += 1;
            if flagged == Some(true) {
                q.adult_lines_flagged_child += 1;
                if misses.len() < 200 {
                    misses.push(format!("ADULT-AS-CHILD: {text}"));
                }
            }
        }
    }
}

/// Truth record of one line as written to `truth.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineTruth {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line start in the file.
    pub offset: u64,
    pub child: Option<bool>,
    pub style: Style,
    pub spans: Vec<Span>,
}

/// Write a corpus: `corpus.log` (UTF-8), `corpus.gb18030.log`,
/// `corpus.log.gz`, `truth.jsonl` (per line), `students.csv` and
/// `students.truth.json`. Streams; memory stays small whatever `lines`.
pub fn write_corpus(
    dir: &std::path::Path,
    opts: &CorpusOptions,
    lines: u64,
    table_rows: usize,
) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut g = Generator::new(opts);
    let mut log = std::io::BufWriter::new(std::fs::File::create(dir.join("corpus.log"))?);
    let mut gb = std::io::BufWriter::new(std::fs::File::create(dir.join("corpus.gb18030.log"))?);
    let mut gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(std::fs::File::create(dir.join("corpus.log.gz"))?),
        flate2::Compression::fast(),
    );
    let mut truth = std::io::BufWriter::new(std::fs::File::create(dir.join("truth.jsonl"))?);
    let mut offset = 0u64;
    for n in 1..=lines {
        let l = g.next_line();
        let t = LineTruth {
            line: n,
            offset,
            child: l.child,
            style: l.style,
            spans: l.spans,
        };
        serde_json::to_writer(&mut truth, &t)?;
        truth.write_all(b"\n")?;
        log.write_all(l.text.as_bytes())?;
        log.write_all(b"\n")?;
        gz.write_all(l.text.as_bytes())?;
        gz.write_all(b"\n")?;
        let (enc, _, _) = encoding_rs::GB18030.encode(&l.text);
        gb.write_all(&enc)?;
        gb.write_all(b"\n")?;
        offset += l.text.len() as u64 + 1;
    }
    log.flush()?;
    gb.flush()?;
    gz.finish()?.flush()?;
    truth.flush()?;
    if table_rows > 0 {
        let t = g.table(table_rows);
        let mut w =
            csv::Writer::from_path(dir.join("students.csv")).map_err(std::io::Error::other)?;
        w.write_record(&t.columns).map_err(std::io::Error::other)?;
        for r in &t.rows {
            w.write_record(r).map_err(std::io::Error::other)?;
        }
        w.flush()?;
        let truth = serde_json::json!({"columns": t.columns, "column_truth": t.column_truth, "row_child": t.row_child});
        std::fs::write(
            dir.join("students.truth.json"),
            serde_json::to_vec_pretty(&truth)?,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(seed: u64) -> CorpusOptions {
        CorpusOptions::new(seed, NaiveDate::from_ymd_opt(2025, 6, 1).unwrap())
    }

    #[test]
    fn deterministic_per_seed() {
        let a: Vec<String> = {
            let mut g = Generator::new(&opts(5));
            (0..200).map(|_| g.next_line().text).collect()
        };
        let b: Vec<String> = {
            let mut g = Generator::new(&opts(5));
            (0..200).map(|_| g.next_line().text).collect()
        };
        let c: Vec<String> = {
            let mut g = Generator::new(&opts(6));
            (0..200).map(|_| g.next_line().text).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn people_are_consistent() {
        let mut g = Generator::new(&opts(1));
        for i in 0..2000 {
            let child = i % 2 == 0;
            let p = g.person(child);
            assert_eq!(
                crate::detect::validate::resident_id_18(&p.id),
                Some(p.birth)
            );
            assert_eq!(p.age < 14, child, "{p:?}");
            assert_eq!(crate::detect::age_at(p.birth, g.as_of), Some(p.age as i32));
        }
    }

    #[test]
    fn spans_point_at_values() {
        let mut g = Generator::new(&opts(2));
        for _ in 0..2000 {
            let l = g.next_line();
            for s in &l.spans {
                assert!(
                    l.text.is_char_boundary(s.start)
                        && l.text.is_char_boundary(s.end)
                        && s.start < s.end
                );
            }
            assert!(!l.text.contains('\n'));
        }
    }
}
