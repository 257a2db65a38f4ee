//! Reads the console needs beside the admin API's: one installation with its servers, a
//! page of installations, the search by customer name, installation id, GUID or license id,
//! and one installation's events.

use leasehold_proto::{InstallationId, LicenseId, ServerGuid};
use leasehold_web::ApiError;

use super::Node;
use crate::api::{InstallationView, ServerSummary, ServerView, VendorEvent};
use crate::domain;
use crate::store::{InstallationRecord, StoreTx};

/// Installations one console page lists.
pub const INSTALLATIONS_PER_PAGE: u32 = 50;
/// Most matches a search shows of each kind.
const SEARCH_LIMIT: u32 = 50;

/// What a search found.
#[derive(Debug, Clone, Default)]
pub struct SearchResults {
    /// Installations whose name contains the text, or whose id it is.
    pub installations: Vec<InstallationView>,
    /// Servers whose GUID is, or starts with, the text.
    pub servers: Vec<ServerView>,
    /// The license whose id it is.
    pub license: Option<crate::api::LicenseView>,
}

impl SearchResults {
    pub fn is_empty(&self) -> bool {
        self.installations.is_empty() && self.servers.is_empty() && self.license.is_none()
    }
}

async fn with_servers(
    tx: &mut dyn StoreTx,
    i: InstallationRecord,
) -> Result<InstallationView, ApiError> {
    let servers = tx
        .servers_of(&i.id)
        .await?
        .into_iter()
        .map(|s| ServerSummary {
            guid: s.guid,
            context: s.context,
        })
        .collect();
    Ok(InstallationView {
        id: i.id,
        name: i.name,
        created_at: i.created_at,
        servers,
    })
}

/// The GUID prefix `text` may be (hex digits and dashes, at least four digits), in the
/// stored form: upper case behind a `{`.
fn guid_prefix(text: &str) -> Option<String> {
    let t = text.trim().trim_start_matches('{').trim_end_matches('}');
    let digits = t.chars().filter(char::is_ascii_hexdigit).count();
    (digits >= 4 && t.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        .then(|| format!("{{{}", t.to_ascii_uppercase()))
}

impl Node {
    /// One installation with its servers.
    pub async fn installation(&self, id: &InstallationId) -> Result<InstallationView, ApiError> {
        let mut tx = self.begin().await?;
        let i = tx
            .installation(id, false)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("installation {id} not found")))?;
        with_servers(&mut *tx, i).await
    }

    /// Installations of page `page` (from 0), oldest first, and how many there are.
    pub async fn installations_page(
        &self,
        page: u64,
    ) -> Result<(Vec<InstallationView>, u64), ApiError> {
        let mut tx = self.begin().await?;
        let (rows, total) = tx
            .installations_page(
                page.saturating_mul(u64::from(INSTALLATIONS_PER_PAGE)),
                INSTALLATIONS_PER_PAGE,
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for i in rows {
            out.push(with_servers(&mut *tx, i).await?);
        }
        Ok((out, total))
    }

    /// Finds installations by customer name or id, servers by GUID (whole or its first
    /// digits), and a license by id.
    pub async fn search(&self, text: &str) -> Result<SearchResults, ApiError> {
        let text = text.trim();
        let mut out = SearchResults::default();
        if text.is_empty() {
            return Ok(out);
        }
        let mut tx = self.begin().await?;
        if let Ok(guid) = ServerGuid::parse(text) {
            if tx.server(guid, false).await?.is_some() {
                out.servers.push(domain::server_view(&mut *tx, guid).await?);
            }
            return Ok(out);
        }
        if let Ok(id) = LicenseId::parse(text) {
            out.license = tx
                .license(&id, false)
                .await?
                .map(|r| crate::api::LicenseView {
                    license: r.license,
                    server: r.server,
                    revoked_at: r.revoked_at,
                });
            return Ok(out);
        }
        if let Ok(id) = InstallationId::parse(text) {
            if let Some(i) = tx.installation(&id, false).await? {
                out.installations.push(with_servers(&mut *tx, i).await?);
            }
            return Ok(out);
        }
        for i in tx.installations_named(text, SEARCH_LIMIT).await? {
            out.installations.push(with_servers(&mut *tx, i).await?);
        }
        if let Some(prefix) = guid_prefix(text) {
            for s in tx.servers_with_guid_prefix(&prefix, SEARCH_LIMIT).await? {
                out.servers
                    .push(domain::server_view(&mut *tx, s.guid).await?);
            }
        }
        Ok(out)
    }

    /// The events (forks, context rejections, grace, silence) of one installation's servers.
    pub async fn installation_events(
        &self,
        id: &InstallationId,
        silent_days: u32,
    ) -> Result<Vec<VendorEvent>, ApiError> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let servers = tx.servers_of(id).await?;
        Ok(domain::events::events(&servers, now, silent_days))
    }

    /// Now, by the node's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_prefixes_are_hex_and_dashes() {
        assert_eq!(guid_prefix("df99").as_deref(), Some("{DF99"));
        assert_eq!(guid_prefix("{DF9960A1-7b").as_deref(), Some("{DF9960A1-7B"));
        assert_eq!(guid_prefix("df9"), None);
        assert_eq!(guid_prefix("acme"), None);
        assert_eq!(guid_prefix("deadbeef corp"), None);
    }
}
