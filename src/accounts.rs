//! Accounts: password hashing, sign-in checks and the first admin.
//!
//! Passwords are hashed with Argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes, OWASP's
//! recommended minimum) on a blocking thread, so a burst of sign-ins never stalls the runtime.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::model::{EmailAddress, Password, User, UserRole};
use crate::store::{NewUser, SharedStore, StoreError};

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed (out of memory, or a blocking thread could not run).
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Hashes a password into an Argon2id PHC string.
pub async fn hash_password(password: &Password) -> Result<String, AccountError> {
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| AccountError::Hashing(e.to_string()))
    })
    .await
    .map_err(|e| AccountError::Hashing(e.to_string()))?
}

/// A PHC string of a password nobody has, verified when the account does not exist so that a
/// wrong address takes as long as a wrong password (no account probing by timing).
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZGVjb3lzYWx0ZGVjb3k$1R9VrnJ7b+Zq3kJ0GqPq8vWZ0m3L2t1s8c5rI0bqk3A";

/// Whether `password` matches the PHC string `stored`.
pub async fn verify_password(password: &Password, stored: Option<String>) -> bool {
    let exists = stored.is_some();
    let stored = stored.unwrap_or_else(|| DECOY_HASH.to_owned());
    let password = password.clone();
    let matched = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.expose().as_bytes(), &hash)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false);
    exists && matched
}

/// The user these credentials sign in, if they do (and the account is not disabled).
pub async fn sign_in(
    store: &SharedStore,
    email: &EmailAddress,
    password: &Password,
) -> Result<Option<User>, AccountError> {
    let candidate = store.login_candidate(email).await?;
    let (user, hash) = match candidate {
        Some(c) if !c.user.disabled => (Some(c.user), c.password_hash),
        _ => (None, None),
    };
    let ok = verify_password(password, hash).await;
    Ok(user.filter(|_| ok))
}

/// Creates an admin with a password unless a user with this address exists; returns whether
/// it was created.
pub async fn ensure_admin(
    store: &SharedStore,
    email: EmailAddress,
    name: &str,
    password: &Password,
) -> Result<bool, AccountError> {
    if store.login_candidate(&email).await?.is_some() {
        return Ok(false);
    }
    let hash = hash_password(password).await?;
    match store
        .create_user(NewUser {
            email,
            name: name.to_owned(),
            role: UserRole::Admin,
            teams: Vec::new(),
            password_hash: Some(hash),
        })
        .await
    {
        Ok(_) => Ok(true),
        // Another instance created it at the same moment.
        Err(StoreError::Conflict(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hashed_password_verifies_and_a_different_one_does_not() {
        let right = Password::parse("correct horse battery").unwrap();
        let wrong = Password::parse("correct horse battery!").unwrap();
        let hash = hash_password(&right).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&right, Some(hash.clone())).await);
        assert!(!verify_password(&wrong, Some(hash)).await);
    }

    #[tokio::test]
    async fn no_stored_hash_never_verifies_not_even_against_the_decoy() {
        let p = Password::parse("correct horse battery").unwrap();
        assert!(!verify_password(&p, None).await);
        assert!(
            PasswordHash::new(DECOY_HASH).is_ok(),
            "the decoy must parse, or timing differs"
        );
    }
}
