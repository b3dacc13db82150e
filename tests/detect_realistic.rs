//! Realistic Chinese lines per category (positives and hard negatives), run
//! through the engine. Resident IDs are built with real region codes and a
//! computed MOD 11-2 check digit; `{ID16}` is a child born 2016-03-07,
//! `{ID85}` an adult born 1985-11-23 (as of 2025-06-01).
//!
//! Cases marked `gap` are known misses / false positives the engine does not
//! handle (documented in the report): the test asserts that they still
//! behave as recorded, so fixing one makes it fail until it is moved to the
//! passing list.

use childguard::detect::{validate, Engine, EngineOptions, Hit};
use childguard::finding::Category;
use childguard::fingerprint::Fingerprinter;
use chrono::NaiveDate;

use Category::*;

fn engine() -> Engine {
    Engine::new(
        EngineOptions::new(NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()),
        Fingerprinter::new(b"realistic"),
    )
    .unwrap()
}

/// 18-digit ID: region + birth (YYYYMMDD) + sequence, with its check digit.
fn id18(region: &str, birth: &str, seq: &str) -> String {
    let first17 = format!("{region}{birth}{seq}");
    let c = validate::mod11_2_check(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

/// An 18-digit ID whose check character is `X`.
fn id_x() -> String {
    (100..999)
        .map(|s| id18("440305", "20170521", &s.to_string()))
        .find(|i| i.ends_with('X'))
        .unwrap()
}

fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' | 'A'..='Z' | 'a'..='z' => char::from_u32(c as u32 + 0xFEE0).unwrap(),
            c => c,
        })
        .collect()
}

/// A 16-19 digit card number: `body` plus its Luhn check digit.
fn card(body: &str) -> String {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = (c - b'0') as u32;
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

fn group4(s: &str) -> String {
    s.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

fn spaced(id: &str, sep: &str) -> String {
    format!("{}{sep}{}{sep}{}", &id[..6], &id[6..14], &id[14..])
}

struct Case {
    line: String,
    cat: Category,
    expect: bool,
    gap: bool,
}

fn cases() -> Vec<Case> {
    let c16 = id18("110105", "20160307", "123");
    let a85 = id18("320102", "19851123", "456");
    let gz = id18("520102", "20130915", "031");
    let idx = id_x();
    let idx_lower = idx.to_lowercase();
    let mut v: Vec<(String, Category, bool, bool)> = Vec::new();
    let mut p = |l: &str, c: Category| v.push((l.to_string(), c, true, false));
    // ---- resident id: positives
    p(&format!("身份证号码：{c16}"), CnResidentId);
    p(&format!("证件号 {a85}"), CnResidentId);
    p(&format!("sfzh={gz}&name=x"), CnResidentId);
    p(
        &format!("{{\"idCard\":\"{c16}\",\"xm\":\"张三\"}}"),
        CnResidentId,
    );
    p(&format!("{c16},张三,男,2016-03-07"), CnResidentId);
    p(
        &format!("https://a.example.cn/q?idcard={c16}&t=1"),
        CnResidentId,
    );
    p(&format!("身份证 {}", spaced(&c16, " ")), CnResidentId);
    p(&format!("身份证 {}", spaced(&c16, "-")), CnResidentId);
    p(&format!("身份证号：{idx}"), CnResidentId);
    p(&format!("身份证号：{idx_lower}"), CnResidentId);
    p(&format!("身份证号码：{}", fullwidth(&c16)), CnResidentId);
    p(&format!("公民身份号码{a85}"), CnResidentId);
    p(&format!("ID number: {gz}."), CnResidentId);
    p(&format!("孩子的身份证是{c16}，请核对"), CnResidentId);
    p("身份证 110105160307123", CnResidentId); // 15-digit (1916? no: 15-digit = 19yy)
    p(&format!("'{c16}'"), CnResidentId);
    p(&format!("<td>{a85}</td>"), CnResidentId);
    p(&format!("\t{gz}\t"), CnResidentId);
    p(
        &format!("证件号码:{} 性别:女", spaced(&idx_lower, " ")),
        CnResidentId,
    );
    p(
        &format!(
            "身份证号 {} {} {} {}",
            &c16[..6],
            &c16[6..10],
            &c16[10..14],
            &c16[14..]
        ),
        CnResidentId,
    );
    p(&format!("\"sfzh\",\"{gz}\""), CnResidentId);
    // ---- mobile
    p("电话：138 1234 5678", CnMobile);
    p("(+86)13812345678", CnMobile);
    p("手机号码:+86-138-1234-5678", CnMobile);
    p("手机：13812345678", CnMobile);
    p("电话 +86 138 1234 5678", CnMobile);
    p("+8613812345678", CnMobile);
    p("0086 13912345678", CnMobile);
    p("86-13912345678", CnMobile);
    p("联系电话：139-1234-5678", CnMobile);
    p("tel=15012345678&x=1", CnMobile);
    p("{\"phone\":\"18612345678\"}", CnMobile);
    p("家长手机 177 0123 4567", CnMobile);
    p("手机号：１３８１２３４５６７８", CnMobile);
    p("mobile: 19912345678", CnMobile);
    p("张三,13512345678,北京", CnMobile);
    // ---- birth date
    p("出生日期：2015年3月7日", BirthDate);
    p("出生日期 2015.03.07", BirthDate);
    p("生日：2015/3/7", BirthDate);
    p("csrq=20150307", BirthDate);
    p("dob: 2016-05-01", BirthDate);
    p("date of birth 07/03/2015", BirthDate);
    p("出生年月：2014年11月", BirthDate);
    p("生于2016年1月2日", BirthDate);
    p("{\"birthday\":\"2015-03-07\"}", BirthDate);
    p("出生日期：07.03.2015", BirthDate);
    p("出生年月 2016年9月", BirthDate);
    p("生日 31/12/2016", BirthDate);
    p("出生日期：二〇一五年三月七日", BirthDate);
    p("生于二零一六年十二月", BirthDate);
    // ---- age
    p("8岁", Age);
    p("孩子今年八岁半", Age);
    p("年龄:十二", Age);
    p("今年8周岁", Age);
    p("he is 7 years old", Age);
    p("age=7", Age);
    p("虚岁9岁", Age);
    p("年龄：9岁", Age);
    p("小明，10岁，三年级", Age);
    p("女，6周岁", Age);
    p("年龄 11", Age);
    p("{\"age\": 9}", Age);
    // ---- school
    p("就读于北京市海淀区第一实验小学", SchoolName);
    p("杭州外国语学校", SchoolName);
    p("华南师范大学附属中学初二", SchoolName);
    p("深圳市南山区九年一贯制学校", SchoolName);
    p("成都市特殊教育学校", SchoolName);
    p("阳光幼儿园大班", SchoolName);
    p("学校：上海市实验小学", SchoolName);
    p("北京市第八中学", SchoolName);
    p("南京市鼓楼区第二十九中学", SchoolName);
    p("长沙市雨花区砂子塘小学", SchoolName);
    // ---- grade/class
    p("三年级二班", GradeClass);
    p("初二(3)班", GradeClass);
    p("五年级3班", GradeClass);
    p("一年级（2）班", GradeClass);
    p("小学四年级", GradeClass);
    p("初一 5班", GradeClass);
    // ---- student id
    p(&format!("学籍号 G{c16}"), StudentId);
    p(&format!("xjh=G{gz}"), StudentId);
    p(&format!("学籍号：L{gz}"), StudentId);
    // ---- passports / permits
    p("护照号码 E12345678", CnPassport);
    p("passport: EA1234567", CnPassport);
    p("往来港澳通行证 C12345678", HkMacauPermit);
    p("回乡证 H1234567801", HkMacauPermit);
    p("台胞证 12345678", TwPermit);
    // ---- bank card
    p("银行卡号 6222021234567890128", BankCard);
    p(
        &format!("卡号：{}", group4(&card("622848001234567891"))),
        BankCard,
    );
    p(
        &format!("银行账号 {}", card("621700123456789012")),
        BankCard,
    );
    // ---- email
    p("邮箱 zhangsan@163.com", Email);
    p("email=li.xiaoming2016@qq.com;", Email);
    p("联系：wang_fang@school.edu.cn", Email);
    // ---- person name
    p("姓名：张三", PersonName);
    p("学生 李小明", PersonName);
    p("姓名:欧阳娜娜", PersonName);
    p("学生姓名 王子涵", PersonName);
    p("{\"xm\":\"刘洋\"}", PersonName);
    // ---- guardian
    p("家长王芳", Guardian);
    p("监护人：张伟 13812345678", Guardian);
    p("父亲：李强", Guardian);
    p("母亲电话 13912345678", Guardian);
    p("妈妈手机：15012345678", Guardian);
    // ---- address
    p("家庭住址：北京市朝阳区建国路88号", Address);
    p("住址 广东省深圳市南山区科技园路1号3栋", Address);
    p("地址：四川省成都市武侯区人民南路四段12号", Address);
    p("户籍地：河南省周口市郸城县汲冢镇李庄村", Address);
    // ---- vulnerable
    p("该生为留守儿童", VulnerableChild);
    p("孤儿", VulnerableChild);
    p("事实无人抚养儿童", VulnerableChild);
    p("困境儿童帮扶", VulnerableChild);
    p("残疾儿童", VulnerableChild);
    p("家庭低保户", VulnerableChild);
    p("疑似受虐儿童", VulnerableChild);

    p("家长：王芳 电话13812345678", Guardian);
    p("监护人姓名 刘建国", Guardian);
    p("姓名：司马懿", PersonName);
    p("该生父母离异，属单亲家庭留守儿童", VulnerableChild);
    p("年龄：7岁半", Age);
    p("7岁男孩", Age);
    p("该生已满8周岁", Age);
    // ---- hard negatives
    let mut n = |l: &str, c: Category| v.push((l.to_string(), c, false, false));
    n(&format!("txn={c16}9"), CnResidentId);
    n(&format!("9{c16}"), CnResidentId);
    n(&format!("{}0", &c16[..17]), CnResidentId);
    n("110105201502301231", CnResidentId);
    n("流水号 20250601120001123456", CnResidentId);
    n("timestamp 1717200000123", CnMobile);
    n("订单 2138123456789", CnMobile);
    n("ref 913812345678", CnMobile);
    n("13812345678901234", CnMobile);
    n("金额 12345678901", CnMobile);
    n("2025-06-01 12:00:01 INFO started", BirthDate);
    n("创建时间 2015-03-07", BirthDate);
    n("[2015/03/07 10:11:12] GET /index", BirthDate);
    n("更新于2016年3月7日", BirthDate);
    n("version 20150307", BirthDate);
    n("出生日期 2015-02-30", BirthDate);
    n("日期 07/03/2015 已审核", BirthDate);
    n("2025年6月 工作总结", BirthDate);
    n("出生日期 31/02/2015", BirthDate);
    n("出生日期：二〇一五年二月三十日", BirthDate);
    n("二〇一五年三月七日 印发", BirthDate);
    n("3岁以下禁用", Age);
    n("适合3-6岁", Age);
    n("保修3年", Age);
    n("18岁以上", Age);
    n("page=7", Age);
    n("3~6岁儿童适用", Age);
    n("建议14岁以上使用", Age);
    n("stage=7", Age);
    n("小学生", SchoolName);
    n("小学数学", SchoolName);
    n("中学教材", SchoolName);
    n("幼儿园老师招聘", SchoolName);
    n("小学生守则", SchoolName);
    n("中小学教育", SchoolName);
    n("张家界", PersonName);
    n("王府井", PersonName);
    n("姓名：", PersonName);
    n("学生会议", PersonName);
    n("家长会 下周举行", Guardian);
    n("父亲节快乐", Guardian);
    n("母亲节", Guardian);
    n("第88号文件", Address);
    n("编号 12号", Address);
    n("银行卡号 6222021234567890123", BankCard);
    n("订单 6222021234567890128", BankCard);
    n("a@b", Email);
    n("version E123456789", CnPassport);
    n("数量 12345678", TwPermit);
    n("残疾人专用通道", VulnerableChild);
    n("张家界旅游攻略", PersonName);
    n("王府井大街步行", PersonName);
    n("卡号 12345678", BankCard);
    n("QQ 1234567890", CnMobile);
    n("2015年3月7日 发布", BirthDate);
    n("20150307 批次", BirthDate);
    n("适用年龄：3-6岁", Age);
    n("满18岁方可申请", Age);
    n("未满14周岁的未成年人", Age);
    n("年满16岁后可自行办理", Age);
    n("成立于1985年，已有40年历史", Age);
    n("低保政策解读", VulnerableChild);
    n("留守儿童关爱工作方案", VulnerableChild);
    n("残疾人保障法", VulnerableChild);
    // Known gaps (see the module doc): kept so a fix is noticed.
    let mut g = |l: &str, c: Category, expect: bool| v.push((l.to_string(), c, expect, true));
    // A value that passes region, date and MOD 11-2 after 订单号 is still
    // reported (negative context lowers nothing for a valid ID): a false
    // positive we accept rather than miss a real ID in an order export.
    g(&format!("订单号 {c16}"), CnResidentId, false);
    // OCR swaps (O/0, l/1) inside IDs and phones are not repaired: a repaired
    // value could pass MOD 11-2 by chance 1 in 11 times.
    g(
        &format!("身份证号 {}", c16.replacen('0', "O", 1)),
        CnResidentId,
        true,
    );
    g("手机 l3812345678", CnMobile, true);
    v.into_iter()
        .map(|(line, cat, expect, gap)| Case {
            line,
            cat,
            expect,
            gap,
        })
        .collect()
}

fn has(hits: &[Hit], c: Category) -> bool {
    hits.iter().any(|h| h.category == c)
}

#[test]
fn realistic_lines() {
    let e = engine();
    let cs = cases();
    let mut bad = Vec::new();
    let mut gaps_fixed = Vec::new();
    for c in &cs {
        let mut hits = Vec::new();
        e.scan_text(&c.line, &mut hits);
        let ok = has(&hits, c.cat) == c.expect;
        let kind = if c.expect { "MISS" } else { "FP" };
        if c.gap {
            if ok {
                gaps_fixed.push(format!("{kind} now fixed {:?}: {}", c.cat, c.line));
            }
        } else if !ok {
            bad.push(format!("{kind} {:?}: {}", c.cat, c.line));
        }
    }
    eprintln!("{} cases", cs.len());
    for b in &bad {
        eprintln!("{b}");
    }
    assert!(gaps_fixed.is_empty(), "{gaps_fixed:#?}");
    assert!(bad.is_empty(), "{} failures", bad.len());
}

#[test]
fn child_flag_from_id_birth_year() {
    let e = engine();
    for (id, child) in [
        (id18("110105", "20160307", "123"), Some(true)),
        (id18("320102", "19851123", "456"), Some(false)),
        (id18("440305", "20110602", "777"), Some(true)), // 13 at 2025-06-01
        (id18("440305", "20110601", "777"), Some(false)), // turns 14 on as-of
    ] {
        let mut hits = Vec::new();
        e.scan_text(&format!("身份证号 {id}"), &mut hits);
        let ev: Vec<_> = hits.iter().filter_map(|h| h.evidence.as_ref()).collect();
        assert_eq!(e.infer_child(ev), child, "{id}");
    }
}
