//! Who may move the accounts whose keys the hub wallet keeps: each belongs to one tenant,
//! and a leg locked by the hub wallet (or a message sent with its key) is accepted only
//! from that tenant's keys.

use isthmus_hub_api::{BackendError, Principal};
use isthmus_lock_contracts::Address;
use isthmus_wallet::WalletService;

/// The owner of each hub-wallet account.
pub trait AccountOwners: Send + Sync + 'static {
    /// The tenant `address`'s key is held for; `None` when no tenant owns it.
    fn owner(&self, address: &Address) -> Result<Option<String>, String>;
}

impl AccountOwners for WalletService {
    fn owner(&self, address: &Address) -> Result<Option<String>, String> {
        WalletService::owner(self, address).map_err(|e| e.to_string())
    }
}

/// A hub of one tenant: every account is that tenant's. What a hub assembled without an
/// owner table gets (tests and single-customer hubs); any other tenant moves nothing.
pub struct SingleTenant(pub String);

impl AccountOwners for SingleTenant {
    fn owner(&self, _address: &Address) -> Result<Option<String>, String> {
        Ok(Some(self.0.clone()))
    }
}

/// Refuse unless `by`'s tenant owns `address` (`field` names it in the refusal). An
/// account nobody owns is refused the same way, so the answer does not tell whether the
/// wallet holds it.
pub fn check_owner(
    owners: &dyn AccountOwners,
    by: &Principal,
    field: &str,
    address: &str,
) -> Result<(), BackendError> {
    let owner = owners
        .owner(&Address(address.to_owned()))
        .map_err(BackendError::Internal)?;
    if owner.as_deref() == Some(by.tenant.as_str()) {
        Ok(())
    } else {
        Err(BackendError::Forbidden(format!(
            "{field}: account `{address}` is not one of tenant `{}`'s hub-wallet accounts",
            by.tenant
        )))
    }
}
