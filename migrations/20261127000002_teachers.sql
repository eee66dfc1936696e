-- Issue #11. An account may be the course's teacher ('teacher'); NULL is a student.
ALTER TABLE users ADD COLUMN role TEXT;
