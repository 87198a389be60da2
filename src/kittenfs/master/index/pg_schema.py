"""The PostgreSQL index's schema (postgres.py): one migration per version, applied in order
at a master's start, under an advisory lock; ``kfs_settings.schema`` holds the version.

- ``kfs_records(key, space, version, replicas, record)``: a key's live (``k``) or unlinked
  (``u``) record; the key is the primary key, so a key is in at most one space by
  construction.  ``version`` and ``replicas`` repeat the record's, for kfs_change.
- ``kfs_pending(blob, move, owner, record)``: a write (``move`` false) or a move's copies
  (true) in flight, and the master that runs it.
- ``kfs_garbage(blob, worker, record)``: a version's replicas still to delete: the whole
  version (``worker`` -1), or one replica left by a move.
- ``kfs_workers(idx, id, info)``, ``kfs_draining(idx)``, ``kfs_credentials``,
  ``kfs_settings`` (the cluster id, the next worker index, the master key's check value).
- ``kfs_masters(id, url, seen)``: each master's last sign of life (the engine's clock).
- ``kfs_leases(name, holder, expires)``: duties that run on one master at a time.

``kfs_change`` is every change of a key's record, in one round trip: it locks the key's row,
checks that the record is still the one the caller read (its version and replicas, and its
space when that matters) and that the write's (or move's) pending record, this master's, is
still there, and only then changes the record, drops the pending record and adds the
garbage.  Otherwise it raises SQLSTATE ``KF001`` (the key changed) or ``KF002`` (the pending
record is gone), and nothing is written.  A key that did not exist is locked by its primary
key: of two masters inserting it, the second's insert finds the first's row and fails with
KF001.
"""

#: The SQLSTATE kfs_change raises when the key's record is not the one the caller read.
KEY_CHANGED = "KF001"
#: The SQLSTATE kfs_change raises when the write's or move's pending record is gone.
PENDING_GONE = "KF002"

#: The schema, one migration per version.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE kfs_records (
        key text COLLATE "C" PRIMARY KEY,
        space text NOT NULL CHECK (space IN ('k', 'u')),
        version text NOT NULL,
        replicas integer[] NOT NULL,
        record bytea NOT NULL
    );
    CREATE INDEX kfs_records_by_space ON kfs_records (space, key);
    CREATE TABLE kfs_pending (
        blob text COLLATE "C" NOT NULL,
        move boolean NOT NULL,
        owner text NOT NULL,
        record bytea NOT NULL,
        PRIMARY KEY (blob, move)
    );
    CREATE TABLE kfs_garbage (
        blob text COLLATE "C" NOT NULL,
        worker integer NOT NULL,
        record bytea NOT NULL,
        PRIMARY KEY (blob, worker)
    );
    CREATE TABLE kfs_workers (idx integer PRIMARY KEY, id text NOT NULL, info bytea NOT NULL);
    CREATE TABLE kfs_draining (idx integer PRIMARY KEY);
    CREATE TABLE kfs_credentials (
        access_key text COLLATE "C" PRIMARY KEY,
        credential bytea NOT NULL
    );
    CREATE TABLE kfs_masters (id text PRIMARY KEY, url text NOT NULL, seen timestamptz NOT NULL);
    CREATE TABLE kfs_leases (
        name text PRIMARY KEY,
        holder text NOT NULL,
        expires timestamptz NOT NULL
    );

    CREATE FUNCTION kfs_change(
        p_key text,
        p_expected text,            -- the version the caller read (NULL: no record)
        p_expected_replicas integer[],  -- and its replicas (unless p_expected is NULL)
        p_expected_space text,      -- and its space (NULL: either)
        p_space text,               -- the new space, or NULL to remove the record
        p_version text,
        p_replicas integer[],
        p_record bytea,
        p_pending_blob text,        -- the pending record to drop (NULL: none), this master's
        p_pending_move boolean,
        p_owner text,
        p_garbage_blobs text[],
        p_garbage_workers integer[],
        p_garbage_records bytea[]
    ) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        found_space text;
        found_version text;
        found_replicas integer[];
    BEGIN
        SELECT space, version, replicas INTO found_space, found_version, found_replicas
            FROM kfs_records WHERE key = p_key FOR UPDATE;
        IF found_version IS DISTINCT FROM p_expected
            OR (p_expected IS NOT NULL AND found_replicas IS DISTINCT FROM p_expected_replicas)
            OR (p_expected_space IS NOT NULL AND found_space IS DISTINCT FROM p_expected_space)
        THEN
            RAISE EXCEPTION USING ERRCODE = 'KF001', MESSAGE = format(
                '%s holds version %s, not %s', p_key, found_version, p_expected);
        END IF;
        IF p_pending_blob IS NOT NULL THEN
            DELETE FROM kfs_pending
                WHERE blob = p_pending_blob AND move = p_pending_move AND owner = p_owner;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'KF002', MESSAGE = format(
                    'the %s of %s is no longer pending',
                    CASE WHEN p_pending_move THEN 'move' ELSE 'write' END, p_key);
            END IF;
        END IF;
        IF p_space IS NULL THEN
            DELETE FROM kfs_records WHERE key = p_key;
        ELSIF found_version IS NULL THEN
            INSERT INTO kfs_records VALUES (p_key, p_space, p_version, p_replicas, p_record)
                ON CONFLICT (key) DO NOTHING;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'KF001', MESSAGE = format(
                    '%s was written meanwhile', p_key);
            END IF;
        ELSE
            UPDATE kfs_records
                SET space = p_space, version = p_version, replicas = p_replicas, record = p_record
                WHERE key = p_key;
        END IF;
        INSERT INTO kfs_garbage
            SELECT * FROM unnest(p_garbage_blobs, p_garbage_workers, p_garbage_records)
            ON CONFLICT (blob, worker) DO UPDATE SET record = EXCLUDED.record;
    END $$;
    """,
)
