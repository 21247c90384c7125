//! Placeholder until the frustration scorer lands (being written in parallel).

/// The score at which a customer counts as frustrated.
pub const DEFAULT_THRESHOLD: f32 = 0.6;

/// Placeholder result.
pub struct Frustration {
    /// 0..1.
    pub score: f32,
}

/// Placeholder scorer.
pub fn score(_recent: &[&str]) -> Frustration {
    Frustration { score: 0.0 }
}
