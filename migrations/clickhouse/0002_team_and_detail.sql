-- The router's fields: the team (queue) a ticket was in at each step, and what else the step
-- says (the rule that fired, where a transfer went, how an overflow moved it). Plain String
-- with a default, so rows shipped before this migration read as ''.
ALTER TABLE handoff_events ADD COLUMN team String DEFAULT '';
ALTER TABLE handoff_events ADD COLUMN detail String DEFAULT '';
