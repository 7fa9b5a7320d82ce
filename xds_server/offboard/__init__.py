"""Offboarding a tenant (GDPR Art. 17): every step that removes what the platform holds of it, each
idempotent and recorded, then a deletion receipt signed with the platform key (docs/offboarding.md)."""
