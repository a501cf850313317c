"""Trusted documents and automatic persisted queries: clients send a document's id (the sha256 of
its text, in Apollo's `persistedQuery` extension) instead of the document.

The CMS and the app ship with a manifest of the documents they send; the API reads it at start
(PRIVACY_API_TRUSTED_DOCUMENTS) and parses, validates and costs each one once. Other documents
a client sends with their hash are kept in a bounded cache of this process (automatic persisted
queries: a client told PERSISTED_QUERY_NOT_FOUND sends the text again). With
PRIVACY_API_REGISTERED_DOCUMENTS_ONLY, callers who are not signed in may run only the
manifest's documents.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from graphql import GraphQLError

from schema.compiled import Plan, Refused
from schema.limits import Recent

logger = logging.getLogger("privacy_api.documents")

# What a client sends in `extensions`: {"persistedQuery": {"version": 1, "sha256Hash": "..."}}.
EXTENSION = "persistedQuery"
VERSION = 1
# Documents sent with their hash outside the manifest, per process.
AUTOMATIC_CACHE_SIZE = 512
# Apollo's clients recognise these messages and codes.
NOT_FOUND = "PersistedQueryNotFound"
NOT_FOUND_CODE = "PERSISTED_QUERY_NOT_FOUND"
NOT_SUPPORTED_CODE = "PERSISTED_QUERY_NOT_SUPPORTED"
HASH_MISMATCH_CODE = "PERSISTED_QUERY_HASH_MISMATCH"
NOT_REGISTERED_CODE = "DOCUMENT_NOT_REGISTERED"
_HEX = frozenset("0123456789abcdef")


class ManifestError(ValueError):
    """The manifest cannot be read, or a document in it is not one the schema can run."""


class Registrar(Protocol):
    """The schema, which parses, validates and costs a document once and compiles it
    (`ApiSchema.register`, `ApiSchema.plan`)."""

    def register(self, query: str) -> list[GraphQLError]: ...
    def validate(self, query: str) -> list[GraphQLError]: ...
    def plan(self, query: str) -> Plan: ...


def document_id(query: str) -> str:
    """A document's id: the sha256 of its UTF-8 text, in lower-case hex (Apollo's, and
    GraphQL Code Generator's `persistedDocuments` with its default hash)."""
    return hashlib.sha256(query.encode()).hexdigest()


def _is_id(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def read_manifest(path: Path) -> dict[str, str]:
    """The documents of a manifest file, by id. Two formats are read: Apollo's persisted query
    manifest (`{"format": "apollo-persisted-query-manifest", "operations": [{"id", "body"}]}`)
    and a JSON object of id to document (GraphQL Code Generator's `persisted-documents.json`).
    Every id must be its document's sha256."""
    try:
        manifest: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ManifestError(f"cannot read the trusted documents in {path}: {error}") from None
    pairs: list[tuple[object, object]]
    if isinstance(manifest, dict) and manifest.get("format") == "apollo-persisted-query-manifest":
        operations = manifest.get("operations")
        if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
            raise ManifestError(f"{path}: `operations` must be a list of objects")
        pairs = [(operation.get("id"), operation.get("body")) for operation in operations]
    elif isinstance(manifest, dict):
        pairs = list(manifest.items())
    else:
        raise ManifestError(f"{path}: expected a JSON object")
    documents: dict[str, str] = {}
    for given_id, body in pairs:
        if not _is_id(given_id) or not isinstance(body, str):
            raise ManifestError(
                f"{path}: each document needs a sha256 id (64 lower-case hex digits) and its "
                f"text; found id {given_id!r}"
            )
        assert isinstance(given_id, str)
        if document_id(body) != given_id:
            raise ManifestError(f"{path}: {given_id} is not the sha256 of its document")
        documents[given_id] = body
    return documents


@dataclass(frozen=True)
class Resolved:
    """The document a request runs, or the error it gets instead."""

    query: str | None = None
    error: GraphQLError | None = None


class PersistedQueries:
    """Where each request's document comes from: the manifest, this process's cache of
    automatic persisted queries, or the request itself."""

    def __init__(
        self,
        trusted: Mapping[str, str],
        *,
        registered_only: bool,
        schema: Registrar | None = None,
        plans: Mapping[str, Plan] | None = None,
    ) -> None:
        self.trusted = dict(trusted)
        # The compiled plans of the trusted documents the compiler understands, by text, and
        # of automatic persisted queries (compiled once they validate); none without a schema.
        self.schema = schema
        self.plans = dict(plans or {})
        self.automatic_plans: Recent[str, Plan] = Recent(AUTOMATIC_CACHE_SIZE)
        # Each trusted text once: the caches behind it are keyed by text, and a text object
        # hashes once for its life (a request's own copy would be hashed on every lookup).
        self._trusted_texts = {text: text for text in self.trusted.values()}
        self.registered_only = registered_only
        self.automatic: Recent[str, str] = Recent(AUTOMATIC_CACHE_SIZE)

    @classmethod
    def load(
        cls, path: Path | None, schema: Registrar, *, registered_only: bool
    ) -> PersistedQueries:
        """The manifest at `path` (none: no trusted documents), each document registered with
        the schema; a document that does not parse or validate stops the start."""
        trusted = read_manifest(path) if path is not None else {}
        plans: dict[str, Plan] = {}
        for given_id, query in trusted.items():
            if errors := schema.register(query):
                raise ManifestError(
                    f"{path}: document {given_id} cannot run: "
                    + "; ".join(error.message for error in errors)
                )
            try:
                plans[query] = schema.plan(query)
            except Refused as refused:
                logger.info(
                    "trusted document %s runs on the general executor: %s", given_id, refused
                )
        return cls(trusted, registered_only=registered_only, schema=schema, plans=plans)

    def resolve(
        self, query: str | None, extensions: Mapping[str, Any] | None, *, anonymous: bool
    ) -> Resolved:
        """The document to run for a request that sent `query` (maybe none) and `extensions`,
        by a caller signed in or not."""
        arbitrary = not (anonymous and self.registered_only)
        persisted = (extensions or {}).get(EXTENSION)
        if persisted is None:
            if query is None or arbitrary:
                return Resolved(query)
            return self._trusted_text(query) or Resolved(error=_not_registered())
        wanted = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
        if not isinstance(persisted, dict) or persisted.get("version") != VERSION:
            return Resolved(
                error=_request_error(
                    f"Unsupported persisted query: send {{'version': {VERSION}, 'sha256Hash': "
                    "...}.",
                    NOT_SUPPORTED_CODE,
                )
            )
        if not _is_id(wanted):
            return Resolved(
                error=_request_error(
                    "persistedQuery.sha256Hash must be 64 lower-case hex digits.",
                    NOT_SUPPORTED_CODE,
                )
            )
        assert isinstance(wanted, str)
        if query is None:
            known = self.trusted.get(wanted)
            if known is None and arbitrary:
                known = self.automatic.get(wanted)
            return Resolved(known) if known is not None else Resolved(error=_not_found())
        if document_id(query) != wanted:
            return Resolved(
                error=_request_error("provided sha does not match query", HASH_MISMATCH_CODE)
            )
        if wanted in self.trusted:
            return Resolved(self.trusted[wanted])
        if not arbitrary:
            return Resolved(error=_not_registered())
        self.automatic.keep(wanted, query)
        self._compile_automatic(query)
        return Resolved(query)

    def _compile_automatic(self, query: str) -> None:
        """The plan of a document first sent with its hash, if it is valid and the compiler
        understands it."""
        if self.schema is None or self.automatic_plans.get(query) is not None:
            return
        if self.schema.validate(query):
            return  # the general executor answers with its errors
        try:
            self.automatic_plans.keep(query, self.schema.plan(query))
        except Refused:
            return

    def registered(self, query: str | None, extensions: Mapping[str, Any] | None) -> str | None:
        """The manifest's text a request names by its id (with its text or without) or by its
        text alone; None for anything else, which resolve() answers. Such a request resolves
        the same for every caller."""
        persisted = (extensions or {}).get(EXTENSION)
        if persisted is None:
            return self._trusted_texts.get(query) if query is not None else None
        if not isinstance(persisted, dict) or persisted.get("version") != VERSION:
            return None
        wanted = persisted.get("sha256Hash")
        known = self.trusted.get(wanted) if isinstance(wanted, str) else None
        return known if query is None or query == known else None

    def plan_for(self, query: str) -> Plan | None:
        """The compiled plan of a registered document; None: the general executor runs it."""
        return self.plans.get(query) or self.automatic_plans.get(query)

    def _trusted_text(self, query: str) -> Resolved | None:
        """A text sent in full that is one of the manifest's documents."""
        known = self._trusted_texts.get(query)
        return Resolved(known) if known is not None else None


def _request_error(message: str, code: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


def _not_found() -> GraphQLError:
    return _request_error(NOT_FOUND, NOT_FOUND_CODE)


def _not_registered() -> GraphQLError:
    return _request_error(
        "Only registered documents may run without signing in: send the document's id "
        "(extensions.persistedQuery.sha256Hash) from the client's manifest.",
        NOT_REGISTERED_CODE,
    )
