"""The database schema: each migration upgrades it by one version (PRAGMA user_version).

A new table or column is one more entry at the end, with a comment saying what it is for;
entries are never edited once released (a database made by that release has applied them).
"""

from __future__ import annotations

# Each entry upgrades the schema by one version; PRAGMA user_version records how far we are.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        persona_name TEXT,
        human_name TEXT,
        summary TEXT NOT NULL DEFAULT '',
        core_updated_at TEXT,
        warning_sent INTEGER NOT NULL DEFAULT 0,
        paused_until TEXT,
        options TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE core_blocks (
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        label TEXT NOT NULL,
        value TEXT NOT NULL,
        char_limit INTEGER NOT NULL,
        position INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT,
        PRIMARY KEY (agent_id, label)
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL,
        agent_tag TEXT NOT NULL,
        role TEXT NOT NULL,
        kind TEXT NOT NULL,
        content TEXT,
        text TEXT,
        sender_name TEXT,
        sender_id TEXT,
        tool_calls TEXT,
        tool_call_id TEXT,
        tool_name TEXT,
        created_at TEXT NOT NULL,
        in_context INTEGER NOT NULL DEFAULT 1,
        pending INTEGER NOT NULL DEFAULT 0,
        external_id TEXT
    );
    CREATE INDEX messages_by_agent ON messages(agent_id, id);
    CREATE INDEX messages_in_context ON messages(agent_id, id) WHERE in_context = 1;
    CREATE INDEX messages_pending ON messages(agent_id, id) WHERE pending = 1;
    CREATE INDEX messages_by_date ON messages(agent_id, created_at);
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, sender_name, agent_tag,
        content='messages', content_rowid='id', tokenize='porter unicode61'
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.text IS NOT NULL BEGIN
        INSERT INTO messages_fts(rowid, text, sender_name, agent_tag)
        VALUES (new.id, new.text, new.sender_name, new.agent_tag);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.text IS NOT NULL BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text, sender_name, agent_tag)
        VALUES ('delete', old.id, old.text, old.sender_name, old.agent_tag);
    END;
    -- One trigger, so the old row is removed before the new one is added (SQLite does not
    -- promise an order between separate triggers). Unchanged text is left alone.
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF text, sender_name ON messages
    WHEN old.text IS NOT new.text OR old.sender_name IS NOT new.sender_name BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text, sender_name, agent_tag)
        SELECT 'delete', old.id, old.text, old.sender_name, old.agent_tag
        WHERE old.text IS NOT NULL;
        INSERT INTO messages_fts(rowid, text, sender_name, agent_tag)
        SELECT new.id, new.text, new.sender_name, new.agent_tag WHERE new.text IS NOT NULL;
    END;
    CREATE TABLE passages (
        id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        text TEXT NOT NULL,
        source TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX passages_by_agent ON passages(agent_id, created_at);
    CREATE TABLE checkpoints (
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (agent_id, name)
    );
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        purpose TEXT NOT NULL,
        model TEXT,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        total_tokens INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX usage_by_agent ON usage(agent_id, id);
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: replies wait in an outbox, committed with their turn, until the adapter delivered them.
    """
    CREATE TABLE outbox (
        id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        target TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at TEXT NOT NULL,
        delivered_at TEXT
    );
    CREATE INDEX outbox_undelivered ON outbox(created_at) WHERE delivered_at IS NULL;
    CREATE INDEX messages_by_sender ON messages(sender_id) WHERE sender_id IS NOT NULL;
    """,
    # 2: dense recall. Message vectors are computed in the background after commit (the queue is
    # filled by triggers, so every path that stores a message is covered); recall_state counts
    # changes per agent so an in-memory search cache knows when to reload.
    """
    CREATE TABLE message_vectors (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- write order: caches fetch only what is new
        message_id INTEGER NOT NULL UNIQUE,
        agent_id TEXT NOT NULL,
        model TEXT NOT NULL,
        vector BLOB NOT NULL  -- float32, little-endian, L2-normalised
    );
    CREATE INDEX message_vectors_by_agent ON message_vectors(agent_id, seq);
    CREATE TABLE vector_queue (message_id INTEGER PRIMARY KEY);
    CREATE TABLE recall_state (
        agent_id TEXT PRIMARY KEY,
        changes INTEGER NOT NULL DEFAULT 0,  -- deletions and edits of searchable messages
        texts INTEGER NOT NULL DEFAULT 0  -- searchable messages (text not null)
    );
    INSERT INTO vector_queue (message_id) SELECT id FROM messages WHERE text IS NOT NULL;
    INSERT INTO recall_state (agent_id, texts)
        SELECT agent_id, COUNT(*) FROM messages WHERE text IS NOT NULL GROUP BY agent_id;
    CREATE TRIGGER recall_insert AFTER INSERT ON messages WHEN new.text IS NOT NULL BEGIN
        INSERT OR IGNORE INTO vector_queue (message_id) VALUES (new.id);
        INSERT INTO recall_state (agent_id, texts) VALUES (new.agent_id, 1)
            ON CONFLICT (agent_id) DO UPDATE SET texts = texts + 1;
    END;
    CREATE TRIGGER recall_delete AFTER DELETE ON messages WHEN old.text IS NOT NULL BEGIN
        DELETE FROM vector_queue WHERE message_id = old.id;
        DELETE FROM message_vectors WHERE message_id = old.id;
        INSERT INTO recall_state (agent_id, changes, texts) VALUES (old.agent_id, 1, 0)
            ON CONFLICT (agent_id) DO UPDATE SET changes = changes + 1, texts = texts - 1;
    END;
    CREATE TRIGGER recall_update AFTER UPDATE OF text, sender_name ON messages
    WHEN old.text IS NOT new.text OR old.sender_name IS NOT new.sender_name BEGIN
        DELETE FROM message_vectors WHERE message_id = old.id;
        DELETE FROM vector_queue WHERE message_id = old.id AND new.text IS NULL;
        INSERT OR IGNORE INTO vector_queue (message_id) SELECT new.id WHERE new.text IS NOT NULL;
        INSERT INTO recall_state (agent_id, changes, texts) VALUES
            (new.agent_id, 1, (new.text IS NOT NULL) - (old.text IS NOT NULL))
            ON CONFLICT (agent_id) DO UPDATE
            SET changes = changes + 1, texts = texts + excluded.texts;
    END;
    """,
    # 4: while dense recall is off (kv key recall:dense_off) nothing empties vector_queue, so
    # nothing is kept in it; turning dense recall on queues what was stored meanwhile.
    """
    CREATE TRIGGER vector_queue_while_off AFTER INSERT ON vector_queue
    WHEN EXISTS (SELECT 1 FROM kv WHERE key = 'recall:dense_off') BEGIN
        DELETE FROM vector_queue WHERE message_id = new.message_id;
    END;
    """,
]

# 5: context order. Message ids are handed out when a message is created, but an input accepted
# while a turn runs (say, while a tool awaits I/O) joins the context only at the next turn: its
# id can fall between a tool call and its result. So a message that joins the context later than
# it was created gets a `position` from the same counter when it joins; NULL means "it joined
# when it was created", i.e. at its id. Every query that rebuilds a context (or groups calls with
# their results) sorts by CONTEXT_ORDER.
CONTEXT_ORDER_MIGRATION = """
    ALTER TABLE messages ADD COLUMN position INTEGER;
    -- Rows stored before this version were put back in context by id. Renumber them in that
    -- order, except that each tool result goes right after the call it answers, ahead of any
    -- message stored between the two (the input that arrived while the tool ran).
    WITH calls AS MATERIALIZED (
        SELECT a.agent_id AS agent_id, a.id AS call_message,
               CAST(json_extract(j.value, '$.id') AS TEXT) AS call_id
        FROM messages a,
             json_each(CASE WHEN json_valid(a.tool_calls) THEN a.tool_calls ELSE '[]' END) j
        WHERE a.role = 'assistant' AND a.tool_calls IS NOT NULL
    ), anchored AS MATERIALIZED (
        SELECT t.id AS id, MAX(c.call_message) AS anchor
        FROM messages t JOIN calls c ON c.agent_id = t.agent_id AND c.call_id = t.tool_call_id
            AND c.call_message < t.id
        WHERE t.role = 'tool' GROUP BY t.id
    ), ordered AS MATERIALIZED (
        SELECT m.id AS id, ROW_NUMBER() OVER (ORDER BY COALESCE(x.anchor, m.id), m.id) AS rank
        FROM messages m LEFT JOIN anchored x ON x.id = m.id
    )
    UPDATE messages SET position = ordered.rank FROM ordered WHERE ordered.id = messages.id;
    -- Store.open reads the highest position (the counter continues above it).
    CREATE INDEX messages_by_position ON messages(position) WHERE position IS NOT NULL;
"""
MIGRATIONS.append(CONTEXT_ORDER_MIGRATION)

# 6: the provider's own fields of an assistant message (DeepSeek's reasoning_content, OpenRouter's
# reasoning_details), a JSON object sent back with it unchanged; NULL for none. A tool call's own
# fields (Gemini's thought signature) live in its entry of `tool_calls`.
MIGRATIONS.append("ALTER TABLE messages ADD COLUMN extra TEXT;")
# 7: the context window and token ratio learned per model and server (bot/windows.py): an
# overflow error's window, and server tokens per tiktoken token, survive a restart.
MIGRATIONS.append("""
    CREATE TABLE model_windows (
        base_url TEXT NOT NULL,
        model TEXT NOT NULL,
        learned_window INTEGER,
        server_window INTEGER,  -- what the server reported when learned_window was learned
        token_ratio REAL NOT NULL DEFAULT 1.0,
        samples INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (base_url, model)
    );
""")
# 8: a person's edit or deletion on Discord finds the stored message by its external id.
MIGRATIONS.append(
    "CREATE INDEX messages_by_external ON messages(external_id) WHERE external_id IS NOT NULL;")

# 9: per-person core memory in a shared agent (bot/memory/people.py): one block per person who
# spoke there. `last_spoke` (a context position) picks who is in context; `paged_in` (when they
# entered it) keeps their blocks in a stable order, so a prompt cache survives their turns.
# Shared channel agents made before this version get per-person blocks too.
MIGRATIONS.append("""
    CREATE TABLE person_blocks (
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        person_id TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        value TEXT NOT NULL DEFAULT '',
        last_spoke INTEGER NOT NULL DEFAULT 0,
        paged_in INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT,
        PRIMARY KEY (agent_id, person_id)
    );
    CREATE INDEX person_blocks_recent ON person_blocks(agent_id, last_spoke);
    UPDATE agents SET options = json_set(CASE WHEN json_valid(options) THEN options ELSE '{}'
        END, '$.people', json('true'))
        WHERE id LIKE 'channel:%' AND id NOT LIKE '%:member:%';
""")
