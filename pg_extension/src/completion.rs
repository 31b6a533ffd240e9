//! Profile completion scoring: how ready a traveler is to be booked automatically.
//!
//! The weights below are the one place the score is defined; they sum to 100
//! (a unit test holds that). Each missing item comes with one actionable sentence.

/// A calendar date, compared as (year, month, day).
pub type Ymd = (i32, u32, u32);

/// One input of the score: the field name reported as missing, its weight and
/// the recommendation shown to the traveler.
pub struct Criterion {
    pub field: &'static str,
    pub weight: i32,
    pub recommendation: &'static str,
}

/// The scoring table, in the order items are reported.
pub const CRITERIA: [Criterion; 7] = [
    Criterion {
        field: "first_name",
        weight: 10,
        recommendation: "Add your first name exactly as it appears on your passport.",
    },
    Criterion {
        field: "last_name",
        weight: 10,
        recommendation: "Add your last name exactly as it appears on your passport.",
    },
    Criterion {
        field: "date_of_birth",
        weight: 15,
        recommendation: "Add your date of birth: airlines require it to issue a ticket.",
    },
    Criterion {
        field: "phone_number",
        weight: 15,
        recommendation: "Add a mobile number so we can reach you about your bookings.",
    },
    Criterion {
        field: "phone_verified",
        weight: 15,
        recommendation: "Verify your phone number to get booking alerts by SMS.",
    },
    Criterion {
        field: "payment_method",
        weight: 25,
        recommendation: "Add a valid card so we can book flights for you automatically.",
    },
    Criterion {
        field: "notification_preferences",
        weight: 10,
        recommendation: "Choose how you want to be notified about price drops and bookings.",
    },
];

/// Oldest plausible traveler: an older date of birth is a typo, not a person.
const MAX_AGE_YEARS: i32 = 130;

/// What the score looks at, already read from the database.
#[derive(Debug, Clone, Default)]
pub struct ProfileFacts {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub date_of_birth: Option<Ymd>,
    pub phone_number: Option<String>,
    pub phone_verified: bool,
    /// Expiry (year, month) of each card on file.
    pub card_expiries: Vec<(i32, u32)>,
    /// Whether the preferences are chosen (not the empty default) and valid
    /// (`preferences::counts`).
    pub notification_preferences_set: bool,
}

/// A score and the criteria it misses, as a bit mask over [`CRITERIA`] (bit i set
/// when criterion i is missing): compact enough to ship a batch to SQL as arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub score: i32,
    pub missing_mask: i32,
}

impl Completion {
    fn missing(&self) -> impl Iterator<Item = &'static Criterion> + '_ {
        CRITERIA.iter().enumerate().filter(|(i, _)| self.missing_mask & (1 << i) != 0).map(|(_, c)| c)
    }

    pub fn missing_fields(&self) -> Vec<String> {
        self.missing().map(|c| c.field.to_owned()).collect()
    }

    pub fn recommendations(&self) -> Vec<String> {
        self.missing().map(|c| c.recommendation.to_owned()).collect()
    }
}

fn present(text: &Option<String>) -> bool {
    text.as_deref().is_some_and(|t| !t.trim().is_empty())
}

/// A date of birth counts when it is not in the future and not more than
/// `MAX_AGE_YEARS` ago.
pub fn plausible_birth_date(date_of_birth: Ymd, today: Ymd) -> bool {
    let (year, month, day) = today;
    date_of_birth <= today && date_of_birth >= (year - MAX_AGE_YEARS, month, day)
}

/// A card is usable through the last day of its expiry month.
pub fn card_unexpired(expiry: (i32, u32), today: Ymd) -> bool {
    expiry >= (today.0, today.1)
}

/// Scores a profile as of `today`.
pub fn score(facts: &ProfileFacts, today: Ymd) -> Completion {
    let has_phone = present(&facts.phone_number);
    let satisfied = |field: &str| match field {
        "first_name" => present(&facts.first_name),
        "last_name" => present(&facts.last_name),
        "date_of_birth" => facts.date_of_birth.is_some_and(|dob| plausible_birth_date(dob, today)),
        "phone_number" => has_phone,
        "phone_verified" => has_phone && facts.phone_verified,
        "payment_method" => facts.card_expiries.iter().any(|&e| card_unexpired(e, today)),
        "notification_preferences" => facts.notification_preferences_set,
        _ => false,
    };
    let mut completion = Completion { score: 0, missing_mask: 0 };
    for (i, criterion) in CRITERIA.iter().enumerate() {
        if satisfied(criterion.field) {
            completion.score += criterion.weight;
        } else {
            completion.missing_mask |= 1 << i;
        }
    }
    completion
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: Ymd = (2026, 11, 26);

    fn complete() -> ProfileFacts {
        ProfileFacts {
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            date_of_birth: Some((1990, 12, 10)),
            phone_number: Some("+447700900123".into()),
            phone_verified: true,
            card_expiries: vec![(2030, 1)],
            notification_preferences_set: true,
        }
    }

    fn missing(facts: &ProfileFacts) -> Vec<String> {
        score(facts, TODAY).missing_fields()
    }

    #[test]
    fn weights_sum_to_100_and_fields_are_unique() {
        assert_eq!(CRITERIA.iter().map(|c| c.weight).sum::<i32>(), 100);
        let mut fields: Vec<_> = CRITERIA.iter().map(|c| c.field).collect();
        fields.sort_unstable();
        fields.dedup();
        assert_eq!(fields.len(), CRITERIA.len());
    }

    #[test]
    fn a_complete_profile_scores_100() {
        assert_eq!(score(&complete(), TODAY), Completion { score: 100, missing_mask: 0 });
    }

    #[test]
    fn an_empty_profile_scores_0_with_every_recommendation() {
        let result = score(&ProfileFacts::default(), TODAY);
        assert_eq!(result.score, 0);
        assert_eq!(result.missing_fields().len(), CRITERIA.len());
        assert_eq!(result.recommendations()[4], "Verify your phone number to get booking alerts by SMS.");
    }

    /// Phone number is the exception: without it, "verified" cannot count either
    /// (see the next test).
    #[test]
    fn each_field_costs_its_weight() {
        type Remove = fn(&mut ProfileFacts);
        let cases: [(&str, Remove); 6] = [
            ("first_name", |f| f.first_name = None),
            ("last_name", |f| f.last_name = Some("  ".into())),
            ("date_of_birth", |f| f.date_of_birth = None),
            ("phone_verified", |f| f.phone_verified = false),
            ("payment_method", |f| f.card_expiries.clear()),
            ("notification_preferences", |f| f.notification_preferences_set = false),
        ];
        for (field, remove) in cases {
            let mut facts = complete();
            remove(&mut facts);
            let weight = CRITERIA.iter().find(|c| c.field == field).unwrap().weight;
            let result = score(&facts, TODAY);
            assert_eq!(result.score, 100 - weight, "{field}");
            assert_eq!(result.missing_fields(), [field], "{field}");
        }
    }

    #[test]
    fn a_verified_flag_without_a_phone_does_not_count() {
        let mut facts = complete();
        facts.phone_number = Some(" ".into());
        assert_eq!(missing(&facts), ["phone_number", "phone_verified"]);
        assert_eq!(score(&facts, TODAY).score, 70);
    }

    #[test]
    fn birth_dates_in_the_future_or_over_130_years_ago_do_not_count() {
        assert!(plausible_birth_date(TODAY, TODAY), "born today");
        assert!(!plausible_birth_date((2026, 11, 27), TODAY), "tomorrow");
        assert!(plausible_birth_date((1896, 11, 26), TODAY), "exactly 130 years");
        assert!(!plausible_birth_date((1896, 11, 25), TODAY), "130 years and a day");
        let mut facts = complete();
        facts.date_of_birth = Some((2100, 1, 1));
        assert_eq!(missing(&facts), ["date_of_birth"]);
    }

    #[test]
    fn an_expired_card_does_not_count_but_one_valid_card_is_enough() {
        assert!(card_unexpired((2026, 11), TODAY), "valid through the end of its month");
        assert!(!card_unexpired((2026, 10), TODAY));
        assert!(!card_unexpired((2025, 12), TODAY));
        let mut facts = complete();
        facts.card_expiries = vec![(2020, 1)];
        assert_eq!(missing(&facts), ["payment_method"]);
        facts.card_expiries.push((2027, 3));
        assert!(missing(&facts).is_empty());
    }
}
