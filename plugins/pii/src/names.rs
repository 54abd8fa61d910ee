//! Column-name evidence and a small first-name lexicon for names in free text.

use crate::Entity;

/// Split `customerEmail`, `date_of_birth`, `IP-Address` into lowercase tokens.
pub fn tokens(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Names of things that are not people, so `company_name` is not a PERSON hint.
const NOT_PEOPLE: &[&str] = &[
    "company",
    "product",
    "file",
    "host",
    "domain",
    "brand",
    "org",
    "organization",
    "item",
    "plan",
    "category",
    "app",
    "user",
    "display",
    "table",
    "column",
    "field",
    "class",
    "type",
    "server",
    "street",
    "city",
    "state",
    "country",
    "bank",
    "branch",
    "store",
    "shop",
    "team",
    "project",
    "event",
    "campaign",
    "account",
];

/// The entity a column's name suggests, if any.
pub fn hint(column: &str) -> Option<Entity> {
    let t = tokens(column);
    let has = |w: &str| t.iter().any(|x| x == w);
    let joined: String = t.concat();
    if has("email") || has("mail") || joined.contains("email") {
        return Some(Entity::Email);
    }
    if has("ip") || has("ipv4") || has("ipv6") || joined == "ipaddress" {
        return Some(Entity::Ip);
    }
    if has("mac") && (has("address") || has("addr") || t.len() == 1) {
        return Some(Entity::Mac);
    }
    if has("iban") {
        return Some(Entity::Iban);
    }
    if has("nhs") {
        return Some(Entity::UkNhs);
    }
    if has("nino") || (has("national") && has("insurance")) || joined.contains("nationalinsurance") {
        return Some(Entity::UkNino);
    }
    if has("passport") {
        return Some(Entity::UsPassport);
    }
    if has("dea") || (has("medical") && (has("license") || has("licence"))) || has("npi") {
        return Some(Entity::MedicalLicense);
    }
    if has("driver")
        || has("drivers")
        || has("dl")
        || joined.contains("driverslicense")
        || joined.contains("driverlicense")
    {
        return Some(Entity::UsDriverLicense);
    }
    if has("btc") || has("bitcoin") || has("wallet") || has("crypto") {
        return Some(Entity::Crypto);
    }
    if has("ssn") || (has("social") && has("security")) || joined.contains("socialsecurity") {
        return Some(Entity::Ssn);
    }
    if (has("credit") || has("card") || has("cc")) && !has("id")
        || joined.contains("creditcard")
        || joined.contains("cardnumber")
    {
        return Some(Entity::CreditCard);
    }
    if has("phone")
        || has("telephone")
        || has("tel")
        || has("mobile")
        || has("cell")
        || has("fax")
        || has("msisdn")
        || joined.contains("phone")
    {
        return Some(Entity::Phone);
    }
    if has("url") || has("uri") || has("website") || has("homepage") || has("link") || joined.contains("website") {
        return Some(Entity::Url);
    }
    if has("dob") || has("birth") || has("birthday") || has("birthdate") || joined.contains("dateofbirth") {
        return Some(Entity::DateTime);
    }
    let person_word =
        has("name") || has("surname") || has("firstname") || has("lastname") || has("fullname") || has("forename");
    if person_word && !t.iter().any(|x| NOT_PEOPLE.contains(&x.as_str())) {
        return Some(Entity::Person);
    }
    // Split name columns as real tables name them, in several languages:
    // `first`, `last`, `middle` alone, `fname`, `given_nm`, `nombre`,
    // `apellidos`, `vorname`, `prénom`, `cognome`.
    let alone = |w: &[&str]| t.len() == 1 && w.contains(&t[0].as_str());
    let split_name = alone(&["first", "last", "middle", "given", "family", "nom", "nome", "nombres"])
        || [
            "fname", "lname", "mname", "givenname", "familyname", "nombre", "apellido", "apellidos", "vorname",
            "nachname", "prenom", "prénom", "cognome", "primeironome", "sobrenome",
        ]
        .iter()
        .any(|w| has(w) || joined.contains(w))
        || (has("first") || has("last") || has("middle") || has("given") || has("family"))
            && (has("nm") || has("n") || has("nme"))
        // `LAST_FIRST`, `first_last`: a name written in either order.
        || has("first") && has("last");
    if split_name && !t.iter().any(|x| NOT_PEOPLE.contains(&x.as_str())) {
        return Some(Entity::Person);
    }
    // Case, record, member, account numbers.
    let number_word = has("number") || has("no") || has("num") || has("nbr") || has("id") || has("code") || has("ref");
    let record_word = has("case")
        || has("record")
        || has("docket")
        || has("booking")
        || has("member")
        || has("membership")
        || has("mrn")
        || has("inmate")
        || has("citation")
        || has("claim")
        || has("customer")
        || has("patient")
        || has("employee")
        || has("student");
    if (record_word && number_word) || has("mrn") || joined.contains("casenumber") || joined.contains("docket") {
        return Some(Entity::IdNumber);
    }
    if has("address")
        || has("addr")
        || has("street")
        || has("city")
        || has("town")
        || has("zip")
        || has("zipcode")
        || has("postcode")
        || has("postal")
    {
        return Some(Entity::Location);
    }
    if has("date") || has("timestamp") || has("time") || has("dt") {
        return Some(Entity::DateTime);
    }
    None
}

/// Common English first names (US Social Security top names, both sexes),
/// lowercase, sorted for binary search. Used only for names inside free text,
/// where a capitalised word pair needs a first name to count as a person.
pub const FIRST_NAMES: &[&str] = &[
    "aaron",
    "abigail",
    "adam",
    "adrian",
    "aidan",
    "alan",
    "albert",
    "alex",
    "alexa",
    "alexander",
    "alexandra",
    "alexis",
    "alice",
    "alicia",
    "allison",
    "alyssa",
    "amanda",
    "amber",
    "amy",
    "andrea",
    "andrew",
    "angela",
    "anna",
    "anne",
    "anthony",
    "antonio",
    "april",
    "ariana",
    "arthur",
    "ashley",
    "audrey",
    "austin",
    "ava",
    "barbara",
    "benjamin",
    "beth",
    "betty",
    "beverly",
    "bill",
    "billy",
    "blake",
    "bobby",
    "bonnie",
    "bradley",
    "brandon",
    "brandy",
    "brenda",
    "brendan",
    "brent",
    "brett",
    "brian",
    "brianna",
    "bridget",
    "brittany",
    "brooke",
    "bruce",
    "bryan",
    "caitlin",
    "calvin",
    "cameron",
    "candice",
    "carl",
    "carla",
    "carlos",
    "carmen",
    "carol",
    "caroline",
    "carolyn",
    "casey",
    "catherine",
    "chad",
    "charles",
    "charlotte",
    "chelsea",
    "cheryl",
    "chloe",
    "chris",
    "christian",
    "christina",
    "christine",
    "christopher",
    "cindy",
    "claire",
    "clarence",
    "claudia",
    "cody",
    "colin",
    "connie",
    "connor",
    "corey",
    "courtney",
    "craig",
    "crystal",
    "curtis",
    "cynthia",
    "dakota",
    "dale",
    "dana",
    "daniel",
    "danielle",
    "danny",
    "darlene",
    "darren",
    "david",
    "dawn",
    "dean",
    "deanna",
    "deborah",
    "debra",
    "denise",
    "dennis",
    "derek",
    "diana",
    "diane",
    "dominic",
    "donald",
    "donna",
    "doris",
    "dorothy",
    "douglas",
    "dustin",
    "dylan",
    "earl",
    "edward",
    "elaine",
    "elijah",
    "elizabeth",
    "ella",
    "ellen",
    "emily",
    "emma",
    "eric",
    "erica",
    "erik",
    "erin",
    "ethan",
    "eugene",
    "eva",
    "evan",
    "evelyn",
    "faith",
    "frances",
    "francis",
    "frank",
    "gabriel",
    "gabriela",
    "gail",
    "gary",
    "george",
    "gerald",
    "gina",
    "glen",
    "glenn",
    "gloria",
    "grace",
    "greg",
    "gregory",
    "hailey",
    "haley",
    "hannah",
    "harold",
    "harry",
    "hayley",
    "heather",
    "heidi",
    "helen",
    "henry",
    "holly",
    "howard",
    "hunter",
    "ian",
    "isaac",
    "isabel",
    "isabella",
    "jack",
    "jackson",
    "jacob",
    "jacqueline",
    "jaime",
    "james",
    "jamie",
    "jane",
    "janet",
    "janice",
    "jared",
    "jasmine",
    "jason",
    "jay",
    "jean",
    "jeffrey",
    "jenna",
    "jennifer",
    "jeremy",
    "jerry",
    "jesse",
    "jessica",
    "jill",
    "jimmy",
    "jo",
    "joan",
    "joann",
    "joanna",
    "joe",
    "joel",
    "john",
    "johnny",
    "jon",
    "jonathan",
    "jordan",
    "jose",
    "joseph",
    "joshua",
    "joy",
    "joyce",
    "juan",
    "judith",
    "judy",
    "julia",
    "julie",
    "justin",
    "kaitlyn",
    "karen",
    "kari",
    "katherine",
    "kathleen",
    "kathryn",
    "kathy",
    "katie",
    "kayla",
    "keith",
    "kelly",
    "kelsey",
    "kendra",
    "kenneth",
    "kevin",
    "kim",
    "kimberly",
    "kristen",
    "kristin",
    "kristina",
    "kyle",
    "kylie",
    "larry",
    "laura",
    "lauren",
    "lawrence",
    "leah",
    "lee",
    "leslie",
    "levi",
    "linda",
    "lindsay",
    "lindsey",
    "lisa",
    "logan",
    "lori",
    "louis",
    "lucas",
    "lucy",
    "luis",
    "luke",
    "lynn",
    "madison",
    "mallory",
    "mandy",
    "marc",
    "marcus",
    "margaret",
    "maria",
    "marie",
    "marilyn",
    "mario",
    "mark",
    "martha",
    "martin",
    "mary",
    "mason",
    "matthew",
    "megan",
    "melanie",
    "melinda",
    "melissa",
    "melvin",
    "michael",
    "micheal",
    "michele",
    "michelle",
    "miguel",
    "mike",
    "mindy",
    "miranda",
    "misty",
    "mitchell",
    "molly",
    "monica",
    "morgan",
    "nancy",
    "natalie",
    "nathan",
    "nathaniel",
    "nicholas",
    "nichole",
    "nicole",
    "noah",
    "norma",
    "olivia",
    "oscar",
    "paige",
    "pamela",
    "patricia",
    "patrick",
    "paul",
    "paula",
    "peggy",
    "peter",
    "philip",
    "phillip",
    "rachel",
    "ralph",
    "randall",
    "randy",
    "raymond",
    "rebecca",
    "regina",
    "renee",
    "rhonda",
    "richard",
    "ricky",
    "riley",
    "robert",
    "roberto",
    "robin",
    "rodney",
    "roger",
    "ronald",
    "rose",
    "ross",
    "roy",
    "ruth",
    "ryan",
    "sabrina",
    "samantha",
    "samuel",
    "sandra",
    "sara",
    "sarah",
    "scott",
    "sean",
    "sergio",
    "seth",
    "shane",
    "shannon",
    "sharon",
    "shawn",
    "sheila",
    "shelby",
    "shelly",
    "sherry",
    "shirley",
    "sierra",
    "sophia",
    "spencer",
    "stacey",
    "stacy",
    "stephanie",
    "stephen",
    "steve",
    "steven",
    "susan",
    "suzanne",
    "sydney",
    "sylvia",
    "tammy",
    "tanya",
    "tara",
    "taylor",
    "teresa",
    "terri",
    "terry",
    "theodore",
    "theresa",
    "thomas",
    "tiffany",
    "timothy",
    "tina",
    "todd",
    "tom",
    "tommy",
    "tony",
    "tracey",
    "tracy",
    "travis",
    "trevor",
    "troy",
    "tyler",
    "valerie",
    "vanessa",
    "veronica",
    "victor",
    "victoria",
    "vincent",
    "virginia",
    "walter",
    "wanda",
    "wayne",
    "wendy",
    "william",
    "willie",
    "xavier",
    "yolanda",
    "yvonne",
    "zachary",
    "zoe",
];

/// Is `word` (any case) a known first name?
pub fn is_first_name(word: &str) -> bool {
    FIRST_NAMES.binary_search(&word.to_lowercase().as_str()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexicon_is_sorted_for_binary_search() {
        assert!(FIRST_NAMES.windows(2).all(|w| w[0] < w[1]));
        assert!(is_first_name("Natalie") && !is_first_name("Billing"));
    }

    #[test]
    fn split_and_foreign_name_columns() {
        for c in [
            "first",
            "LAST",
            "middle",
            "fname",
            "given_nm",
            "nombre",
            "apellidos",
            "Vorname",
            "prénom",
            "last_nm",
            "LAST_FIRST",
        ] {
            assert_eq!(hint(c), Some(Entity::Person), "{c}");
        }
        for c in ["last_login", "first_visit", "company_name", "store"] {
            assert_ne!(hint(c), Some(Entity::Person), "{c}");
        }
        for c in ["case_number", "CaseNo", "docket", "member_id", "booking_num", "mrn"] {
            assert_eq!(hint(c), Some(Entity::IdNumber), "{c}");
        }
    }

    #[test]
    fn hints_from_names() {
        assert_eq!(hint("email"), Some(Entity::Email));
        assert_eq!(hint("customerEmail"), Some(Entity::Email));
        assert_eq!(hint("ip_address"), Some(Entity::Ip));
        assert_eq!(hint("street_address"), Some(Entity::Location));
        assert_eq!(hint("full_name"), Some(Entity::Person));
        assert_eq!(hint("company_name"), None);
        assert_eq!(hint("date_of_birth"), Some(Entity::DateTime));
        assert_eq!(hint("website"), Some(Entity::Url));
        // A record number names its person (the verdict also needs text
        // codes: an integer surrogate key stays NONE).
        assert_eq!(hint("customer_id"), Some(Entity::IdNumber));
        assert_eq!(hint("plan"), None);
        assert_eq!(hint("native_country"), None);
        assert_eq!(hint("signup_channel"), None);
        assert_eq!(hint("nhs_number"), Some(Entity::UkNhs));
        assert_eq!(hint("passport_no"), Some(Entity::UsPassport));
        assert_eq!(hint("driversLicense"), Some(Entity::UsDriverLicense));
        assert_eq!(hint("btc_wallet"), Some(Entity::Crypto));
        assert_eq!(hint("dea_number"), Some(Entity::MedicalLicense));
    }
}
