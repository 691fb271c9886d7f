"""The gateway's database: canonical log rows (docs/log-schema.md) written through SQLAlchemy.

SQLite (WAL) by default, PostgreSQL by URL (`postgresql+psycopg://...`). Times are stored as integer
microseconds since the epoch (UTC) so both databases hold and export exactly the same values.

Tables: `messages`, `reactions`, `users` mirror the canonical schema; `conversations` holds each
conversation's owner, arm, length and a chained hash of its messages (to check that a request extends it);
`assignments` logs each user's arm per experiment.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import queue
import threading
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from rluf.errors import ConfigError

log = logging.getLogger(__name__)
metadata = MetaData()

messages = Table(
    "messages", metadata,
    Column("message_id", String(64), primary_key=True),
    Column("conversation_id", String(64), nullable=False),
    Column("parent_id", String(64), nullable=True),
    Column("turn_index", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),  # microseconds since epoch, UTC
    Column("user_id", String(128), nullable=False),
    Column("model_id", String(64), nullable=True),  # the arm, on assistant messages
    UniqueConstraint("conversation_id", "turn_index", name="uq_messages_turn"),
)
reactions = Table(
    "reactions", metadata,
    Column("message_id", String(64), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("type", String(64), primary_key=True),  # one row per (message, user, type): a repeat is a no-op
    Column("created_at", BigInteger, nullable=False),
)
users = Table(
    "users", metadata,
    Column("user_id", String(128), primary_key=True),
    Column("created_at", BigInteger, nullable=False),  # first seen by the gateway
)
conversations = Table(
    "conversations", metadata,
    Column("conversation_id", String(64), primary_key=True),
    Column("user_id", String(128), nullable=False),
    Column("experiment", String(128), nullable=False),
    Column("arm", String(64), nullable=False),
    Column("n_messages", Integer, nullable=False),
    Column("path_hash", String(64), nullable=False),
    Column("last_message_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
assignments = Table(
    "assignments", metadata,
    Column("experiment", String(128), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("arm", String(64), nullable=False),
    Column("assigned_at", BigInteger, nullable=False),
)
Index("ix_reactions_created", reactions.c.created_at)


def chain_hash(previous: str, role: str, text: str) -> str:
    """h_i = sha256(h_{i-1} | role | text): equal hashes mean equal message sequences."""
    return hashlib.sha256(f"{previous}\0{role}\0{text}".encode()).hexdigest()


def path_hash(turns: list[tuple[str, str]]) -> str:
    h = ""
    for role, text in turns:
        h = chain_hash(h, role, text)
    return h


class ConversationConflict(Exception):
    """The conversation changed (or is not the caller's) between the check and the commit."""


@dataclass
class Turn:
    """What one answered request adds to the log: new messages (user/system/assistant) and their context."""

    conversation_id: str
    user_id: str
    experiment: str
    arm: str
    new: bool  # True: the conversation starts with these rows
    prev_n: int  # messages already stored (0 for a new conversation)
    prev_hash: str
    rows: list[dict]  # message rows in order; the last is the assistant answer
    now_us: int


def database_url(url: str) -> str:
    """Accept a SQLAlchemy URL or a plain path to a SQLite file."""
    if "://" not in url:
        return f"sqlite:///{url}"
    return url


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database url>"


def make_engine(url: str, *, sqlite_synchronous: str = "NORMAL", pool_size: int = 8) -> Engine:
    url = database_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"database url {url!r} is not a SQLAlchemy URL; use sqlite:///path/to/file.db or "
            "postgresql+psycopg://user@host:5432/dbname"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # hide_parameters: errors and SQL logs never carry row values (message text, user ids)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # WAL: readers never block the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cur.execute("PRAGMA busy_timeout=30000")
            # No automatic checkpoint inside a commit (it syncs to disk, on the event loop): the Store's
            # checkpoint thread copies the WAL back instead (see SqliteCheckpointer)
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                             hide_parameters=True)
    raise ConfigError(
        f"database {safe_url(url)}: backend {parsed.get_backend_name()!r} is not supported; "
        "use sqlite:///file.db or postgresql+psycopg://..."
    )


class SqliteCheckpointer:
    """Copies the SQLite WAL back into the database file from a background thread, every `every_s` seconds.

    A PASSIVE checkpoint never blocks writers, and Python's sqlite3 releases the GIL while it syncs, so the
    disk sync that SQLite's automatic checkpoint would do inside a request's commit happens off the loop.
    """

    def __init__(self, path: str, every_s: float = 0.5):
        self.path, self.every_s = path, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rluf-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import sqlite3

        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        try:
            while not self._stop.wait(self.every_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as e:  # e.g. the file was removed under us: try again next time
                    log.debug("WAL checkpoint failed: %s", e)
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Store:
    """All reads and writes of the gateway. Each method is one transaction; writes commit before returning."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL", pool_size: int = 8):
        self.url = database_url(url)
        self.engine = make_engine(self.url, sqlite_synchronous=sqlite_synchronous, pool_size=pool_size)
        self.dialect = self.engine.dialect.name
        # One writer at a time in this process: SQLite allows only one anyway (and serialising avoids SQLITE_BUSY
        # on read-then-write upgrades); on PostgreSQL the group committer batches instead.
        self._write_lock = threading.Lock()
        self._known: set[tuple[str, str]] = set()  # (experiment, user) whose user and assignment rows exist
        self._pending_known: list[tuple[str, str]] = []
        metadata.create_all(self.engine)
        self._build_statements()
        db = self.engine.url.database
        self._checkpointer = (SqliteCheckpointer(db) if self.dialect == "sqlite" and db and db != ":memory:"
                              else None)

    def _build_statements(self) -> None:
        """Statements built once and executed with parameters: no per-request SQL construction."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        c = conversations.c
        self._ins_users = insert(users).on_conflict_do_nothing()
        self._ins_assignment = insert(assignments).on_conflict_do_nothing()
        self._ins_reaction = insert(reactions).on_conflict_do_nothing().returning(reactions.c.message_id)
        self._ins_conversation = conversations.insert()
        self._ins_messages = messages.insert()
        # WHERE binds are prefixed so that the SET columns come from the parameters' plain names
        self._extend_conversation = update(conversations).where(
            c.conversation_id == bindparam("w_conversation_id"), c.user_id == bindparam("w_user_id"),
            c.n_messages == bindparam("w_prev_n"), c.path_hash == bindparam("w_prev_hash"))
        self._sel_conversation = select(conversations).where(c.conversation_id == bindparam("cid"))
        self._sel_message = select(messages.c.message_id, messages.c.role, messages.c.user_id).where(
            messages.c.message_id == bindparam("mid"))
        r = reactions.c
        self._del_reaction = reactions.delete().where(
            r.message_id == bindparam("mid"), r.user_id == bindparam("uid"), r.type == bindparam("typ"))

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()

    # -- conversations ---------------------------------------------------------------------------------
    def get_conversation(self, conversation_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._sel_conversation, {"cid": conversation_id}).mappings().first()
        return dict(row) if row else None

    def apply_turn(self, conn, turn: Turn) -> None:
        """Write one turn inside `conn`'s transaction. The conversation check comes first, so a conflict
        raises ConversationConflict before this turn wrote anything."""
        last = turn.rows[-1]
        new_hash = turn.prev_hash
        for r in turn.rows:
            new_hash = chain_hash(new_hash, r["role"], r["text"])
        state = dict(n_messages=turn.prev_n + len(turn.rows), path_hash=new_hash,
                     last_message_id=last["message_id"], updated_at=turn.now_us)
        if turn.new:
            conn.execute(self._ins_conversation, dict(
                conversation_id=turn.conversation_id, user_id=turn.user_id, experiment=turn.experiment,
                arm=turn.arm, created_at=turn.now_us, **state))
        else:
            res = conn.execute(self._extend_conversation, dict(
                w_conversation_id=turn.conversation_id, w_user_id=turn.user_id, w_prev_n=turn.prev_n,
                w_prev_hash=turn.prev_hash, **state))
            if res.rowcount != 1:
                raise ConversationConflict(turn.conversation_id)
        key = (turn.experiment, turn.user_id)
        if key not in self._known:  # skip two statements for users this process already logged
            conn.execute(self._ins_users, {"user_id": turn.user_id, "created_at": turn.now_us})
            conn.execute(self._ins_assignment, {"experiment": turn.experiment, "user_id": turn.user_id,
                                                "arm": turn.arm, "assigned_at": turn.now_us})
            self._pending_known.append(key)
        conn.execute(self._ins_messages, turn.rows)

    def apply_reaction(self, conn, message_id: str, user_id: str, type_: str, now_us: int) -> bool:
        row = {"message_id": message_id, "user_id": user_id, "type": type_, "created_at": now_us}
        return conn.execute(self._ins_reaction, row).first() is not None  # INSERT rowcount is not portable

    def apply_unreaction(self, conn, message_id: str, user_id: str, type_: str) -> bool:
        res = conn.execute(self._del_reaction, {"mid": message_id, "uid": user_id, "typ": type_})
        return res.rowcount == 1

    def write_batch(self, ops: list) -> list:
        """Run write operations `op(conn)` in ONE transaction (group commit) and return, per op, its result
        or the ConversationConflict it raised. Any other error rolls the whole batch back and is raised."""
        out: list = []
        with self._write_lock:
            self._pending_known = []
            with self.engine.begin() as conn:
                for op in ops:
                    try:
                        out.append(op(conn))
                    except ConversationConflict as e:
                        out.append(e)
            if len(self._known) > 1_000_000:  # bounded memory; forgetting only costs two statements
                self._known.clear()
            self._known.update(self._pending_known)  # only after the commit succeeded
        return out

    def log_turn(self, turn: Turn) -> None:
        """Commit the turn's messages, the user, the arm assignment and the conversation state atomically.

        Raises ConversationConflict if another request extended the conversation first.
        """
        (result,) = self.write_batch([lambda conn: self.apply_turn(conn, turn)])
        if isinstance(result, ConversationConflict):
            raise result

    # -- reactions -------------------------------------------------------------------------------------
    def get_message(self, message_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._sel_message, {"mid": message_id}).mappings().first()
        return dict(row) if row else None

    def add_reaction(self, message_id: str, user_id: str, type_: str, now_us: int) -> bool:
        """Insert the reaction; False if this user already left this type on this message (idempotent)."""
        (created,) = self.write_batch([lambda conn: self.apply_reaction(conn, message_id, user_id, type_, now_us)])
        return created

    def remove_reaction(self, message_id: str, user_id: str, type_: str) -> bool:
        """Undo; False if there was nothing to undo (a repeat is a no-op)."""
        (removed,) = self.write_batch([lambda conn: self.apply_unreaction(conn, message_id, user_id, type_)])
        return removed

    def count_users(self, prefix: str) -> int:
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(users).where(
                users.c.user_id.startswith(prefix, autoescape=True))).scalar_one()

    def counts(self) -> dict[str, int]:
        from sqlalchemy import func

        with self.engine.connect() as conn:
            out = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                   for t in (messages, reactions, users, conversations, assignments)}
            out["assistant_messages"] = conn.execute(
                select(func.count()).select_from(messages).where(messages.c.role == "assistant")).scalar_one()
        return out


class GroupCommitter:
    """Group commit: the writes of every request that became ready together go into one transaction, and
    each request awaits the commit holding its rows ("answered means logged" holds per request).

    SQLite: batches commit on the event loop itself, right after the loop turn that queued them. A WAL
    commit with synchronous=NORMAL does not sync to disk, so it is fast, and it saves two thread wake-ups
    per request. The WAL is checkpointed (and synced) by SqliteCheckpointer's thread, never inside a commit.
    PostgreSQL: batches commit on a writer thread, since each statement is a network round trip.
    """

    def __init__(self, store: Store, max_batch: int = 256):
        self.store = store
        self.max_batch = max_batch
        self.inline = store.dialect == "sqlite"
        self._pending: list = []  # SQLite: (op, asyncio future) queued in this loop turn
        self._queue: queue.Queue = queue.Queue()  # PostgreSQL: (op, concurrent future) for the writer thread
        self._thread = None
        if not self.inline:
            self._thread = threading.Thread(target=self._writer_loop, name="rluf-db-writer", daemon=True)
            self._thread.start()

    async def submit(self, op):
        """Run `op(conn)` in the next batch; returns its result, raises ConversationConflict or the batch's error."""
        if self.inline:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            self._pending.append((op, future))
            if len(self._pending) == 1:
                loop.call_soon(self._flush_pending)
            result = await future
        else:
            cfuture: concurrent.futures.Future = concurrent.futures.Future()
            self._queue.put((op, cfuture))
            result = await asyncio.wrap_future(cfuture)
        if isinstance(result, ConversationConflict):
            raise result
        return result

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _commit(self, batch: list) -> None:
        try:
            results = self.store.write_batch([op for op, _ in batch])
        except Exception as e:  # the batch rolled back: every request in it fails (none is answered)
            log.error("database write failed (%s); %d requests fail", type(e).__name__, len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # a request cancelled meanwhile (client gone) is logged, not answered
                future.set_result(result)

    def _flush_pending(self) -> None:
        batch, self._pending = self._pending, []
        self._commit(batch)

    def _writer_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._commit(batch)
                    return
                batch.append(item)
            self._commit(batch)
