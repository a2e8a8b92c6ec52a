//! Offer statistics per queued app: what `GET /v2/queue` reports as
//! `processedOffersSummary` (how many offers were looked at for the app since it entered
//! the launch queue, how many went unused, and why they were declined).
//!
//! Marathon reports the reasons as a funnel: each reason in a fixed order, with
//! `processed` = offers that got as far as that check and `declined` = offers that
//! failed it. `rejectSummaryLaunchAttempt` counts every unused offer since the app was
//! queued; `rejectSummaryLastOffers` counts only the latest unused offer of each agent
//! (an agent whose offer was used drops out).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value as Json, json};

use crate::constraints::NoMatch;

/// Marathon's reasons, in funnel order. Basalt's matcher reports the resource and
/// constraint reasons; role, reservation, maintenance and scarce-resource rejections
/// show up with zero declines (a resource of a role the app does not accept counts as
/// missing, so it surfaces as the resource it lacks).
pub const FUNNEL: [&str; 10] = [
    "UnfulfilledRole",
    "UnfulfilledConstraint",
    "NoCorrespondingReservationFound",
    "AgentMaintenance",
    "InsufficientCpus",
    "InsufficientMemory",
    "InsufficientDisk",
    "InsufficientGpus",
    "InsufficientPorts",
    "DeclinedScarceResources",
];

/// The funnel name of a matcher result.
pub fn reason_name(r: NoMatch) -> &'static str {
    match r {
        NoMatch::UnfulfilledConstraint => "UnfulfilledConstraint",
        NoMatch::InsufficientCpus => "InsufficientCpus",
        NoMatch::InsufficientMemory => "InsufficientMemory",
        NoMatch::InsufficientDisk => "InsufficientDisk",
        NoMatch::InsufficientGpus => "InsufficientGpus",
        NoMatch::InsufficientPorts => "InsufficientPorts",
    }
}

/// One app's statistics since it entered the queue.
#[derive(Debug, Default, Clone)]
pub struct AppOfferStats {
    processed: u64,
    unused: u64,
    last_used_at: Option<String>,
    last_unused_at: Option<String>,
    launch_attempt: BTreeMap<&'static str, u64>,
    last_offers: HashMap<String, &'static str>,
}

impl AppOfferStats {
    /// An offer of `agent` that was used for at least one instance.
    pub fn used(&mut self, agent: &str, at: &str) {
        self.processed += 1;
        self.last_used_at = Some(at.to_string());
        self.last_offers.remove(agent);
    }

    /// An offer of `agent` that fitted no instance, and the first check it failed.
    pub fn unused(&mut self, agent: &str, reason: NoMatch, at: &str) {
        let name = reason_name(reason);
        self.processed += 1;
        self.unused += 1;
        self.last_unused_at = Some(at.to_string());
        *self.launch_attempt.entry(name).or_default() += 1;
        self.last_offers.insert(agent.to_string(), name);
    }

    /// Marathon's `processedOffersSummary` object.
    pub fn to_json(&self) -> Json {
        let mut last: BTreeMap<&'static str, u64> = BTreeMap::new();
        for r in self.last_offers.values() {
            *last.entry(r).or_default() += 1;
        }
        let mut j = json!({
            "processedOffersCount": self.processed,
            "unusedOffersCount": self.unused,
            "rejectSummaryLastOffers": funnel(&last, self.last_offers.len() as u64),
            "rejectSummaryLaunchAttempt": funnel(&self.launch_attempt, self.unused),
        });
        if let Some(t) = &self.last_used_at {
            j["lastUsedOfferAt"] = json!(t);
        }
        if let Some(t) = &self.last_unused_at {
            j["lastUnusedOfferAt"] = json!(t);
        }
        j
    }
}

/// `[{reason, declined, processed}]` in funnel order, from declines per reason out of
/// `total` rejected offers.
fn funnel(declined: &BTreeMap<&'static str, u64>, total: u64) -> Json {
    let mut left = total;
    let list: Vec<Json> = FUNNEL
        .iter()
        .map(|reason| {
            let d = declined.get(reason).copied().unwrap_or(0);
            let entry = json!({"reason": reason, "declined": d, "processed": left});
            left = left.saturating_sub(d);
            entry
        })
        .collect();
    Json::Array(list)
}

/// Statistics of every queued app.
#[derive(Debug, Default)]
pub struct OfferStats(HashMap<String, AppOfferStats>);

impl OfferStats {
    /// The statistics of `app` (created when it is first offered something).
    pub fn app(&mut self, app: &str) -> &mut AppOfferStats {
        self.0.entry(app.to_string()).or_default()
    }

    /// Forgets the apps that left the queue (their next stay starts from zero).
    pub fn retain_queued(&mut self, queued: impl Fn(&str) -> bool) {
        self.0.retain(|k, _| queued(k));
    }

    /// The summary of `app`; an app not offered anything yet reports zeros.
    pub fn summary(&self, app: &str) -> Json {
        self.0.get(app).cloned().unwrap_or_default().to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(list: &'a Json, reason: &str) -> &'a Json {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["reason"] == reason)
            .unwrap()
    }

    #[test]
    fn an_app_never_offered_anything_reports_zeros_in_funnel_order() {
        let s = OfferStats::default().summary("/web");
        assert_eq!(s["processedOffersCount"], 0);
        assert_eq!(s["unusedOffersCount"], 0);
        let reasons: Vec<&str> = s["rejectSummaryLastOffers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons, FUNNEL);
        assert!(s.get("lastUsedOfferAt").is_none());
    }

    #[test]
    fn funnel_counts_processed_down_the_checks() {
        let mut stats = OfferStats::default();
        let a = stats.app("/web");
        a.unused("S1", NoMatch::UnfulfilledConstraint, "t1");
        a.unused("S2", NoMatch::InsufficientMemory, "t2");
        a.unused("S2", NoMatch::InsufficientMemory, "t3");
        a.unused("S3", NoMatch::InsufficientPorts, "t4");
        a.used("S4", "t5");
        let s = stats.summary("/web");
        assert_eq!(s["processedOffersCount"], 5);
        assert_eq!(s["unusedOffersCount"], 4);
        assert_eq!(s["lastUsedOfferAt"], "t5");
        assert_eq!(s["lastUnusedOfferAt"], "t4");
        let attempt = &s["rejectSummaryLaunchAttempt"];
        assert_eq!(
            entry(attempt, "UnfulfilledRole"),
            &json!({"reason": "UnfulfilledRole", "declined": 0, "processed": 4})
        );
        assert_eq!(entry(attempt, "UnfulfilledConstraint")["declined"], 1);
        assert_eq!(entry(attempt, "InsufficientCpus")["processed"], 3);
        assert_eq!(entry(attempt, "InsufficientMemory")["declined"], 2);
        assert_eq!(entry(attempt, "InsufficientPorts")["processed"], 1);
        assert_eq!(entry(attempt, "InsufficientPorts")["declined"], 1);
        assert_eq!(entry(attempt, "DeclinedScarceResources")["processed"], 0);
        // Last offers: one per agent (S2 once), S4 was used.
        let last = &s["rejectSummaryLastOffers"];
        assert_eq!(entry(last, "UnfulfilledRole")["processed"], 3);
        assert_eq!(entry(last, "InsufficientMemory")["declined"], 1);
    }

    #[test]
    fn a_used_offer_removes_its_agent_from_the_last_offers() {
        let mut stats = OfferStats::default();
        stats
            .app("/a")
            .unused("S1", NoMatch::InsufficientCpus, "t1");
        stats.app("/a").used("S1", "t2");
        let last = &stats.summary("/a")["rejectSummaryLastOffers"];
        assert_eq!(entry(last, "UnfulfilledRole")["processed"], 0);
        assert_eq!(entry(last, "InsufficientCpus")["declined"], 0);
        stats.retain_queued(|_| false);
        assert_eq!(stats.summary("/a")["processedOffersCount"], 0);
    }
}
