-- Name uniqueness is checked among an owner's current keys on every
-- insert: found through this index, not by reading all of the owner's keys.
CREATE INDEX keygate_keys_owner_name ON keygate_keys (owner, name);
