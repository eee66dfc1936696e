//! Charts for /teach (filled in next).
