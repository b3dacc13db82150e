use super::*;

fn engine() -> Engine {
    Engine::new(
        EngineOptions::new(NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()),
        Fingerprinter::new(b"test"),
    )
    .unwrap()
}

fn scan(e: &Engine, text: &str) -> Vec<Hit> {
    let mut out = Vec::new();
    e.scan_text(text, &mut out);
    out
}

fn cats(e: &Engine, text: &str) -> Vec<Category> {
    let mut out = Vec::new();
    e.scan_text(text, &mut out);
    out.iter().map(|h| h.category).collect()
}

#[test]
fn finds_id_and_mobile() {
    let e = engine();
    assert_eq!(
        cats(&e, "学生 110105201503071235 家长电话 13812345678"),
        vec![
            Category::CnResidentId,
            Category::CnMobile,
            Category::Guardian
        ]
    );
}

#[test]
fn child_age_edge() {
    let e = engine();
    // Born exactly 14 years before as-of: not a child; one day later: child.
    let b14 = NaiveDate::from_ymd_opt(2011, 6, 1).unwrap();
    assert_eq!(e.is_child(&AgeEvidence::BirthDate(b14)), Some(false));
    assert_eq!(
        e.is_child(&AgeEvidence::BirthDate(b14.succ_opt().unwrap())),
        Some(true)
    );
}

#[test]
fn embedded_packs_check_clean() {
    let r = check_packs(EngineOptions::new(
        NaiveDate::from_ymd_opt(2025, 6, 1).unwrap(),
    ))
    .unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert!(r.rules >= 17);
}

#[test]
fn column_hints() {
    let e = engine();
    for (n, c) in [
        ("sfzh", Category::CnResidentId),
        ("idNo", Category::CnResidentId),
        ("csrq", Category::BirthDate),
        ("birthday", Category::BirthDate),
        ("xm", Category::PersonName),
        ("student_name", Category::PersonName),
        ("xxmc", Category::SchoolName),
        ("nj", Category::GradeClass),
        ("jhrdh", Category::CnMobile),
        ("guardianPhone", Category::Guardian),
        ("guardianPhone", Category::CnMobile),
        ("xjh", Category::StudentId),
        ("student.age", Category::Age),
        ("guardian.name", Category::Guardian),
        ("guardian.name", Category::PersonName),
        ("身份证号", Category::CnResidentId),
        ("出生日期", Category::BirthDate),
        ("监护人电话", Category::Guardian),
        ("监护人电话", Category::CnMobile),
        ("学生姓名", Category::PersonName),
        ("年龄", Category::Age),
        ("就读学校", Category::SchoolName),
        ("家庭住址", Category::Address),
    ] {
        assert!(e.column_ctx(n).hints.contains(&c), "{n} -> {c}");
    }
    assert!(e.column_ctx("created_at").hints.is_empty());
}

#[test]
fn hinted_values() {
    let e = engine();
    let mut out = Vec::new();
    e.scan_value("2015-03-07", &e.column_ctx("csrq"), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].category, Category::BirthDate);
    assert_eq!(out[0].masked, "2015-**-**");
    out.clear();
    e.scan_value("2015-03-07", &e.column_ctx("created"), &mut out);
    assert!(out.is_empty());
    e.scan_value("9", &e.column_ctx("nl"), &mut out);
    assert_eq!(out[0].evidence, Some(AgeEvidence::Years(9)));
    out.clear();
    e.scan_value("张小明", &e.column_ctx("xm"), &mut out);
    assert_eq!(out[0].category, Category::PersonName);
    assert_eq!(out[0].masked, "张**");
}

#[test]
fn printed_forms_and_boundaries() {
    let e = engine();
    assert_eq!(
        cats(&e, "证件 110105 20150307 1235 ok"),
        vec![Category::CnResidentId]
    );
    assert_eq!(
        cats(&e, "id=110105-20150307-1235"),
        vec![Category::CnResidentId]
    );
    assert!(cats(&e, "x 1110105201503071235 y").is_empty());
    assert!(cats(&e, "x a110105201503071235 y").is_empty());
    assert_eq!(cats(&e, "tel +86 138 1234 5678"), vec![Category::CnMobile]);
    let mut out = Vec::new();
    e.scan_text("手机 +86 138 1234 5678", &mut out);
    assert_eq!(out[0].masked, "138****5678");
    let mut o2 = Vec::new();
    e.scan_text("13812345678", &mut o2);
    assert_eq!(out[0].fingerprint, o2[0].fingerprint);
}

#[test]
fn ages() {
    let e = engine();
    for t in [
        "年龄：9",
        "今年八岁",
        "age=7",
        "7 years old",
        "他12岁了",
        "年龄: 十二",
    ] {
        assert_eq!(cats(&e, t), vec![Category::Age], "{t}");
    }
    for t in [
        "3岁以下禁用",
        "保修3年",
        "适用年龄 3-6岁",
        "page=7",
        "适合3岁儿童",
    ] {
        assert!(cats(&e, t).is_empty(), "{t}");
    }
}

#[test]
fn schools() {
    let e = engine();
    let mut out = Vec::new();
    let t = "他就读于北京市朝阳区实验小学三年级二班";
    e.scan_text(t, &mut out);
    let s = out
        .iter()
        .find(|h| h.category == Category::SchoolName)
        .unwrap();
    assert_eq!(&t[s.start..s.end], "北京市朝阳区实验小学");
    let g = out
        .iter()
        .find(|h| h.category == Category::GradeClass)
        .unwrap();
    assert_eq!(&t[g.start..g.end], "三年级二班");
    assert_eq!(g.evidence, Some(AgeEvidence::ChildGrade));
    for t in ["小学生", "小学数学", "中学教材", "他上小学了", "一名小学生"] {
        assert!(!cats(&e, t).contains(&Category::SchoolName), "{t}");
    }
}

#[test]
fn camel_case_keys_landline_negation_and_birth_nearness() {
    let e = engine();
    assert_eq!(
        cats(&e, "guardianPhone=13812345678"),
        vec![Category::CnMobile, Category::Guardian]
    );
    assert_eq!(cats(&e, "电话 (010)62345678"), vec![Category::CnLandline]);
    assert_eq!(cats(&e, "是否留守儿童：否"), Vec::<Category>::new());
    assert_eq!(cats(&e, "是否留守儿童：是").len(), 1);
    assert_eq!(cats(&e, "该生非孤儿"), Vec::<Category>::new());
    // a creation date after a birth date is not a birth date
    let mut out = Vec::new();
    e.scan_text("dob=1980-01-01 created=2025-05-31", &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        e.infer_child(out.iter().filter_map(|h| h.evidence.as_ref())),
        Some(false)
    );
    // address without a house number, after an address label
    let t = "家庭住址：四川省成都市武侯区桂溪街道，电话";
    let mut out = Vec::new();
    e.scan_text(t, &mut out);
    let a = out
        .iter()
        .find(|h| h.category == Category::Address)
        .unwrap();
    assert_eq!(&t[a.start..a.end], "四川省成都市武侯区桂溪街道");
    assert_eq!(cats(&e, "就读于清华附中"), vec![Category::SchoolName]);
}

#[test]
fn engine_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    let e = std::sync::Arc::new(engine());
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let e = e.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                e.scan_text("身份证110105201503071235 手机13812345678", &mut out);
                out.len()
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), 2);
    }
}

#[test]
fn primary_school_pupils_are_children_but_not_staff() {
    let e = engine();
    let child = |t: &str| e.infer_child(scan(&e, t).iter().filter_map(|h| h.evidence.as_ref()));
    assert_eq!(
        child("学生姓名：王小明，手机13812345678，就读于杭州市西湖区文一街小学"),
        Some(true)
    );
    assert_eq!(
        child("王伟老师，手机13812345678，在杭州市西湖区文一街小学任教"),
        None
    );
    assert_eq!(
        child("客户李强，45岁，毕业于杭州市西湖区文一街小学"),
        Some(false)
    );
    assert_eq!(
        child("班主任张丽老师，手机13812345678，在杭州市西湖区文一街小学负责三年级二班的教学工作"),
        None
    );
    // A stated age a student can have outweighs the grade: the grade's
    // student is 14, not a child (CAC Order No. 4 Art. 2); a parent's age
    // leaves the grade's child standing.
    assert_eq!(child("初三学生，14岁"), Some(false));
    assert_eq!(child("初二学生，13岁"), Some(true));
    assert_eq!(child("三年级学生，家长45岁"), Some(true));
    assert_eq!(child("初一(3)班"), Some(true));
}

/// Full-width form of an ASCII string (０-９, Ａ-Ｚ, －).
fn fw(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                char::from_u32(c as u32 - 0x20 + 0xFF00).unwrap()
            } else {
                c
            }
        })
        .collect()
}

#[test]
fn full_width_digits_and_letters() {
    let e = engine();
    // ID with a full-width X check digit, phone, date and age in one line.
    let t = format!(
        "学生身份证：{}，家长手机：{}，出生日期：{}，年龄：{}岁",
        fw("110105201503071235"),
        fw("138-1234-5678"),
        "２０１５年３月７日",
        fw("10")
    );
    let mut out = Vec::new();
    e.scan_text(&t, &mut out);
    let find = |c: Category| out.iter().find(|h| h.category == c).unwrap();
    let id = find(Category::CnResidentId);
    assert_eq!(&t[id.start..id.end], fw("110105201503071235"));
    assert_eq!(id.masked, "110105********1235");
    let mut ascii = Vec::new();
    e.scan_text("身份证 110105201503071235", &mut ascii);
    assert_eq!(
        id.fingerprint, ascii[0].fingerprint,
        "same value, same fingerprint"
    );
    let m = find(Category::CnMobile);
    assert_eq!(&t[m.start..m.end], fw("138-1234-5678"));
    assert_eq!(m.masked, "138****5678");
    let b = find(Category::BirthDate);
    assert_eq!(&t[b.start..b.end], "２０１５年３月７日");
    assert_eq!(
        b.evidence,
        Some(AgeEvidence::BirthDate(
            NaiveDate::from_ymd_opt(2015, 3, 7).unwrap()
        ))
    );
    let a = find(Category::Age);
    assert_eq!(a.evidence, Some(AgeEvidence::Years(10)));
    // every offset is a char boundary of the original text
    for h in &out {
        assert!(t.is_char_boundary(h.start) && t.is_char_boundary(h.end));
    }
    // full-width X check digit (a child born 2015-03-07 with a computed check digit)
    let first17 = "11010520150307002";
    let check = validate::mod11_2_check(first17.as_bytes()) as char;
    let id18 = format!("{first17}{check}");
    let mut out = Vec::new();
    e.scan_text(&format!("身份证号 {}", fw(&id18)), &mut out);
    assert_eq!(cats_of(&out), vec![Category::CnResidentId], "{id18}");
    // a table value in full width
    let mut out = Vec::new();
    e.scan_value(&fw("13912345678"), &e.column_ctx("lxdh"), &mut out);
    assert_eq!(out[0].category, Category::CnMobile);
    assert_eq!(out[0].end, fw("13912345678").len());
    // full-width digits inside a longer run are still not an ID
    assert!(cats(&e, &fw("x 1110105201503071235 y")).is_empty());
}

fn cats_of(out: &[Hit]) -> Vec<Category> {
    out.iter().map(|h| h.category).collect()
}

#[test]
fn school_abbreviations() {
    let e = engine();
    for (t, name) in [
        ("他在北京四中读初二", "北京四中"),
        ("孩子就读于实验二小，三年级", "实验二小"),
        ("学校：人大附中", "人大附中"),
        ("成都七中的学生", "成都七中"),
        ("就读于北京市海淀区一〇一中", "北京市海淀区一〇一中"),
        (
            "转学到北京市第一六一中学附属小学",
            "北京市第一六一中学附属小学",
        ),
    ] {
        let mut out = Vec::new();
        e.scan_text(t, &mut out);
        let s: Vec<&str> = out
            .iter()
            .filter(|h| h.category == Category::SchoolName)
            .map(|h| &t[h.start..h.end])
            .collect();
        assert_eq!(s, vec![name], "{t}");
    }
    let mut out = Vec::new();
    e.scan_text("学生王小明，就读于实验二小", &mut out);
    assert_eq!(
        e.infer_child(out.iter().filter_map(|h| h.evidence.as_ref())),
        Some(true)
    );
    for t in [
        "党的十八届三中全会",
        "休息一小时",
        "其中一小部分",
        "十中八九是这样",
        "北京第四中学",
        "一个中学生",
        "他高三中午回家",
        "这一小块地",
    ] {
        let n = cats(&e, t)
            .iter()
            .filter(|c| **c == Category::SchoolName)
            .count();
        assert!(n <= usize::from(t == "北京第四中学"), "{t}");
    }
}

#[test]
fn names_in_hinted_columns() {
    let e = engine();
    let name = |col: &str, v: &str| {
        let mut out = Vec::new();
        e.scan_value(v, &e.column_ctx(col), &mut out);
        out.iter()
            .find(|h| h.category == Category::PersonName || h.category == Category::Guardian)
            .map(|h| h.masked.clone())
    };
    assert_eq!(name("xm", "张小明").as_deref(), Some("张**"));
    // a surname not on the list, in a name column
    assert_eq!(name("xsxm", "郗子涵").as_deref(), Some("郗**"));
    // aligned tables space two-character names
    assert_eq!(name("姓名", "张　伟").as_deref(), Some("张*"));
    assert_eq!(
        name("student_name", "Zhang Xiaoming").as_deref(),
        Some("Z*************")
    );
    assert_eq!(name("jhrxm", "李强").as_deref(), Some("李*"));
    for v in [
        "未知",
        "不详",
        "暂无",
        "测试",
        "管理员",
        "游客",
        "无",
        "N/A",
        "Not Available",
        "12345",
    ] {
        assert_eq!(name("xm", v), None, "{v}");
    }
    // the same values in an unhinted column are not names
    assert_eq!(name("remark", "郗子涵"), None);
}

/// The two-character prefilter in front of the keyword automaton must never
/// hide a keyword: every keyword of every keyword rule (CJK and ASCII, any
/// ASCII case) is still found in a sentence.
#[test]
fn every_keyword_survives_the_prefilter() {
    let e = engine();
    let mut n = 0;
    for r in e.rules().iter().filter(|r| r.scanner == Scanner::Keywords) {
        for k in &r.spec.keywords {
            let k = k.trim_end_matches('!');
            for form in [k.to_string(), k.to_ascii_uppercase()] {
                let t = format!("备注 {form} 。");
                let mut out = Vec::new();
                e.scan_text(&t, &mut out);
                assert!(out.iter().any(|h| h.rule == r.id), "{form}");
                n += 1;
            }
        }
    }
    assert!(n >= 10);
}

#[test]
fn iso_date_matches_chrono_format() {
    for (y, m, d) in [(2015, 3, 7), (1900, 1, 1), (2025, 12, 31), (999, 10, 9)] {
        let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(iso_date(date), date.format("%Y-%m-%d").to_string());
    }
}

/// Short texts (cells, under [`SHORT`] bytes) take byte-loop paths for
/// full-width forms, `@`, and school abbreviations; long ones use memchr
/// and substring searchers. The same line must give the same hits either
/// way (offsets shifted by the padding).
#[test]
fn short_and_long_paths_give_the_same_hits() {
    let e = engine();
    let lines = [
        "他在北京四中读初二，实验二小三年级",
        "孩子就读于实验二小，家长 ｚｈａｎｇ＠ｅｘａｍｐｌｅ.com",
        "学生 １１０１０５２０１５０３０７１２３５ 电话13812345678",
        "mail a.b@example.cn 人大附中 北京市第十二中学 十一中",
        "他读八中 三中全会 一小时 电话13812345678",
        // More than eight 中/小 before the abbreviation: each is tried.
        "中国 中心 中间 中午 中等 中文 中医 小吃 小说 他在北京四中读初二",
    ];
    let pad = " ".repeat(SHORT);
    for line in lines {
        assert!(line.len() < SHORT);
        let key = |h: &Hit, off: usize| {
            (
                h.start - off,
                h.end - off,
                h.category,
                h.masked.clone(),
                h.fingerprint,
            )
        };
        let mut short = Vec::new();
        e.scan_text(line, &mut short);
        let long_text = format!("{pad}{line}");
        let mut long = Vec::new();
        e.scan_text(&long_text, &mut long);
        assert!(!short.is_empty(), "{line}");
        if line.contains("北京四中") {
            let at = line.find("北京四中").unwrap();
            assert!(
                short
                    .iter()
                    .any(|h| h.category == Category::SchoolName && h.start == at),
                "{line}"
            );
        }
        assert_eq!(
            short.iter().map(|h| key(h, 0)).collect::<Vec<_>>(),
            long.iter().map(|h| key(h, pad.len())).collect::<Vec<_>>(),
            "{line}"
        );
    }
}

/// The hand-written anchored walk of the keyword DFA finds, at every
/// position, exactly what aho-corasick's own anchored search of the same
/// DFA finds.
#[test]
fn anchored_walk_matches_aho_corasick() {
    let e = engine();
    let text = "学生姓名：张小明，家长电话13812345678，监护人 李四 name=Wang studentName 出生日期 2015-03-07 \
                留守儿童 就读于北京市第十二中学 年龄：9岁 Mobile MOBILE mobilephone xm= 幼儿园";
    let b = text.as_bytes();
    let mut checked = 0;
    for i in 0..b.len() {
        use aho_corasick::automaton::Automaton;
        let theirs = e
            .kw_dfa
            .try_find(
                &aho_corasick::Input::new(b)
                    .span(i..b.len())
                    .anchored(aho_corasick::Anchored::Yes),
            )
            .unwrap()
            .map(|m| (m.start(), m.end(), m.pattern().as_usize()));
        assert_eq!(scanner::anchored_at(&e.kw_dfa, b, i), theirs, "at {i}");
        checked += theirs.is_some() as usize;
    }
    assert!(checked >= 10, "only {checked} keyword positions");
}

#[test]
fn first_fullwidth_finds_the_first_folded_form() {
    let reference = |b: &[u8]| {
        memchr::memchr_iter(0xEF, b)
            .find(|&p| p + 2 < b.len() && fullwidth_ascii(b[p + 1], b[p + 2]).is_some())
    };
    // Chinese punctuation (EF-led, not folded) around one folded form, at
    // every offset across the 16-byte steps, and at the very end.
    for pre in 0..40 {
        for form in ["１", "Ａ", "ｚ", "－", "＠", ""] {
            let mut t = "，：（）".repeat(pre / 4 + 1);
            t.push_str(&"x".repeat(pre % 4));
            t.push_str(form);
            t.push('）');
            let b = t.as_bytes();
            let at = |b: &[u8], from: usize| first_fullwidth(b, from).map(|(p, _)| p);
            assert_eq!(at(b, 0), reference(b), "{t}");
            let cut = &b[..b.len() - 2];
            assert_eq!(at(cut, 0), reference(cut), "{t}");
            for from in 0..b.len() {
                let r = reference(&b[from..]).map(|p| from + p);
                assert_eq!(at(b, from), r, "{t} from {from}");
            }
            if let Some((p, a)) = first_fullwidth(b, 0) {
                assert_eq!(Some(a), fullwidth_ascii(b[p + 1], b[p + 2]), "{t}");
            }
        }
    }
}

#[test]
fn infant_ages_in_months_and_births_told_after_the_date() {
    let e = engine();
    let ages = |t: &str| {
        scan(&e, t)
            .iter()
            .filter(|h| h.category == Category::Age)
            .map(|h| (t[h.start..h.end].to_string(), h.evidence))
            .collect::<Vec<_>>()
    };
    let years = |n| Some(AgeEvidence::Years(n));
    assert_eq!(ages("宝宝3个月大"), vec![("3个月大".into(), years(0))]);
    assert_eq!(
        ages("18个月婴儿 体重10kg"),
        vec![("18个月".into(), years(1))]
    );
    assert_eq!(ages("月龄：10 个月"), vec![("月龄：10".into(), years(0))]);
    assert_eq!(
        ages("宝宝八个月的时候开始发烧"),
        vec![("八个月".into(), years(0))]
    );
    for t in [
        "保修12个月",
        "工作3个月了",
        "3个月大促",
        "3-6个月大的宝宝",
        "宝宝100个月大",
    ] {
        assert_eq!(ages(t), vec![], "{t}");
    }
    let births = |t: &str| {
        scan(&e, t)
            .iter()
            .filter(|h| h.category == Category::BirthDate)
            .map(|h| t[h.start..h.end].to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(births("2012年3月15日出生的李明同学"), vec!["2012年3月15日"]);
    assert_eq!(births("2015-03-07 生，男"), vec!["2015-03-07"]);
    // a birth year: the youngest the person can be (the year's last day, or today)
    let born = |t: &str| {
        scan(&e, t)
            .iter()
            .find(|h| h.category == Category::BirthDate)
            .and_then(|h| h.evidence)
    };
    let day = |y, m, d| {
        Some(AgeEvidence::BirthDate(
            NaiveDate::from_ymd_opt(y, m, d).unwrap(),
        ))
    };
    assert_eq!(born("该生2015年出生"), day(2015, 12, 31));
    assert_eq!(born("2025年出生的宝宝"), day(2025, 6, 1));
    assert_eq!(born("2015年生产的设备"), None);
    assert_eq!(born("成立于2015年"), None);
    for t in ["2020年3月5日生产", "2015-03-07生效", "2015-03-07 生成报告"] {
        assert_eq!(births(t), Vec::<String>::new(), "{t}");
    }
}

#[test]
fn a_guardian_column_of_phones_holds_guardians() {
    let e = engine();
    for col in ["jhrdh", "guardian_phone", "家长电话"] {
        let mut out = Vec::new();
        e.scan_value("13912345678", &e.column_ctx(col), &mut out);
        let cs: Vec<_> = out.iter().map(|h| h.category).collect();
        assert_eq!(cs, vec![Category::CnMobile, Category::Guardian], "{col}");
        assert_eq!(out[0].fingerprint, out[1].fingerprint, "{col}");
        assert_eq!(out[1].masked, "139****5678");
    }
    // a phone column that is not a guardian's
    let mut out = Vec::new();
    e.scan_value("13912345678", &e.column_ctx("lxdh"), &mut out);
    assert_eq!(cats_of(&out), vec![Category::CnMobile]);
}
