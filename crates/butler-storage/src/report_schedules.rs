//! Which fire times of each report schedule have been handled: one row per schedule
//! holding the latest, moved forward only by the instance that claims a fire time.

use butler_events::EventTime;

use crate::sql::{Param, Role};
use crate::{Storage, StorageError};

impl Storage {
    /// The latest fire time of `schedule` some instance claimed (UTC, milliseconds),
    /// or `None` when it has never run.
    ///
    /// # Errors
    /// Any database error.
    pub async fn last_report_fire(&self, schedule: &str) -> Result<Option<String>, StorageError> {
        let fire = self
            .backend
            .fetch_optional(
                Role::Read,
                "SELECT last_fire FROM report_schedule_fires WHERE schedule = $1",
                &[Param::Text(schedule)],
                |r| r.time(0),
            )
            .await?;
        Ok(fire.map(|t| t.to_string()))
    }

    /// Claims the fire time `fire` of `schedule` for this instance: `true` when it is
    /// later than every fire time claimed before, so that of several instances woken
    /// by one fire time, one generates its reports.
    ///
    /// # Errors
    /// Any database error.
    pub async fn claim_report_fire(
        &self,
        schedule: &str,
        fire: EventTime,
    ) -> Result<bool, StorageError> {
        let claimed = self
            .backend
            .execute(
                Role::Write,
                "INSERT INTO report_schedule_fires (schedule, last_fire) VALUES ($1, $2) \
                 ON CONFLICT (schedule) DO UPDATE SET last_fire = excluded.last_fire \
                 WHERE report_schedule_fires.last_fire < excluded.last_fire",
                &[Param::Text(schedule), Param::Time(fire)],
            )
            .await?;
        Ok(claimed == 1)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::TempPostgres;
    use crate::{Storage, StorageOptions};

    /// Of several claims of one fire time, one wins; an earlier one never does.
    async fn claims_move_forward_only(storage: &Storage) {
        let key = "daily 0 6 * * *";
        assert_eq!(storage.last_report_fire(key).await.unwrap(), None);
        let at = |text: &str| crate::sql::parse_time(text).unwrap();
        let first = at("2026-11-30T06:00:00.000Z");
        assert!(storage.claim_report_fire(key, first).await.unwrap());
        assert!(
            !storage.claim_report_fire(key, first).await.unwrap(),
            "claimed once"
        );
        assert!(
            !storage
                .claim_report_fire(key, at("2026-11-29T06:00:00.000Z"))
                .await
                .unwrap()
        );
        assert!(
            storage
                .claim_report_fire(key, at("2026-12-01T06:00:00.000Z"))
                .await
                .unwrap()
        );
        assert_eq!(
            storage.last_report_fire(key).await.unwrap().as_deref(),
            Some("2026-12-01T06:00:00.000Z")
        );
        assert_eq!(
            storage.last_report_fire("weekly 0 6 * * 1").await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn claims_move_forward_only_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
            .await
            .unwrap();
        claims_move_forward_only(&storage).await;
    }

    #[tokio::test]
    async fn claims_move_forward_only_on_postgres() {
        let db = TempPostgres::create().await;
        let storage = Storage::open(&db.options()).await.unwrap();
        claims_move_forward_only(&storage).await;
        storage.close().await;
    }
}
