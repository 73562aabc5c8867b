-- Governance objects (AI capabilities, proposals, roles, resources, tier-policy versions,
-- webhook deliveries, ...): one table, typed by kind. The server owns each kind's shape;
-- the store keeps the object as JSON plus the few columns it is looked up by.
CREATE TABLE gov_objects (
    kind        TEXT NOT NULL,     -- 'capability' | 'proposal' | 'role' | 'resource' | 'tier_policy' | 'delivery' | ...
    id          TEXT NOT NULL,     -- time-sortable: id order is creation order
    state       TEXT NOT NULL,     -- kind-specific state ('pending', 'executed', ...), for filtering
    body        TEXT NOT NULL,     -- the object as JSON
    due_ms      BIGINT,            -- when a timer on this object fires (NULL: none)
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
-- Timers that are set (most objects have none).
CREATE INDEX gov_objects_due ON gov_objects (due_ms) WHERE due_ms IS NOT NULL;
CREATE INDEX gov_objects_state ON gov_objects (kind, state, id);

-- The named human an API token belongs to (NULL: none named).
ALTER TABLE api_tokens ADD COLUMN human TEXT;
