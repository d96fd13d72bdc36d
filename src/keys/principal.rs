//! The afs principal's default name, the one place it is spelled out.

/// The afs principal's name when no cell name is known (file auth DB only).
pub const FALLBACK_PRINCIPAL: &str = "afs";

/// The afs principal of a cell: `afs/<cell>@<CELL>`.
pub fn default_principal(cell: &str) -> String {
    format!(
        "afs/{}@{}",
        cell.to_ascii_lowercase(),
        cell.to_ascii_uppercase()
    )
}
