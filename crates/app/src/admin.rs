//! Operator actions that more than one client performs: the CLI, the demo and the test
//! suites save tenants the same way, through the ports.

use anyhow::{Context, bail};
use secrecy::SecretString;

use domain::Tenant;
use ports::store::{CredentialSecret, CredentialStore, NewCredential, Provider, TenantStore};

/// Save a tenant and its credentials (encrypted by the store).
pub async fn add_tenant(
    tenants: &dyn TenantStore,
    credentials: &dyn CredentialStore,
    tenant: &Tenant,
    ekyte_api_key: Option<SecretString>,
    ekyte_mcp_token: Option<SecretString>,
    ghl_private_token: Option<SecretString>,
) -> anyhow::Result<()> {
    tenant.settings.validate().context("tenant settings")?;
    tenants.upsert(tenant).await.context("saving the tenant")?;
    if let Some(api_key) = ekyte_api_key {
        credentials
            .put(
                &tenant.id,
                Provider::Ekyte,
                &NewCredential {
                    secret: CredentialSecret::Ekyte {
                        api_key,
                        mcp_token: ekyte_mcp_token,
                    },
                    expires_at: None,
                },
            )
            .await
            .context("saving the eKyte credentials")?;
    } else if ekyte_mcp_token.is_some() {
        bail!("an eKyte MCP token needs the company API key too (--ekyte-api-key)");
    }
    if let Some(token) = ghl_private_token {
        credentials
            .put(
                &tenant.id,
                Provider::Ghl,
                &NewCredential {
                    secret: CredentialSecret::GhlPrivate { token },
                    expires_at: None,
                },
            )
            .await
            .context("saving the GHL token")?;
    }
    Ok(())
}
