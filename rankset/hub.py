"""The Hugging Face Hub write path shared by ``rankset push`` (datasets) and ``train push`` (models).

One token and network check before any work, and one commit per push: create the repo (and branch) when missing,
then add every file of a staged folder, optionally deleting files a previous push left under a prefix, so a repo
never mixes two pushes. Every Hub failure becomes the caller's error type with the URL, the revision and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")  # USER/NAME
LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")  # a Hub licence id: mit, cc-by-4.0, other


def check_push_target(repo_id: str, revision: str, dry_run: Path | None, error: type[Exception]) -> None:
    """The flags every push shares: ``--repo-id`` USER/NAME, ``--revision`` a branch name, ``--dry-run`` a new or
    empty folder; raises ``error`` (the caller's ConfigError) naming the flag, the value and the fix."""
    if not REPO_ID.match(repo_id):
        raise error(f"--repo-id {repo_id!r} is not a Hub id; expected USER/NAME (letters, digits, -_.)")
    if not revision.strip() or any(c.isspace() for c in revision):
        raise error(f"--revision {revision!r} is not a branch name; use e.g. main or v1")
    if dry_run is not None:
        from rankset.io import out_folder_problem

        out = Path(dry_run)
        problem = out_folder_problem(out, "--dry-run")
        if problem is not None:
            raise error(problem)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise error(f"--dry-run {out} exists and is not an empty folder; choose a new folder")


def hub_unreachable() -> str | None:
    """Why the Hub cannot be reached (one line, naming the endpoint), or None: checked before a load or push, so an
    offline machine reads its cache or gets one clear message at once, not after the Hub client's five retries (24-26 s
    measured). None with HF_HUB_OFFLINE set: the client then reads its cache without trying the network.
    """
    from huggingface_hub import constants

    from harvest.net import unreachable

    if constants.HF_HUB_OFFLINE:
        return None
    why = unreachable(constants.ENDPOINT)
    return None if why is None else f"cannot reach the Hugging Face Hub at {constants.ENDPOINT}: {why}"


@contextmanager
def hub_offline() -> Iterator[None]:
    """The Hub client and ``datasets`` in offline mode for the duration, as ``HF_HUB_OFFLINE=1`` would set them at
    import: reads come from the local cache, and no request is tried."""
    import datasets
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


def repo_url(repo_id: str, repo_type: str) -> str:
    """The repo's web address: datasets live under ``/datasets/``, models at the top level."""
    return f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"


def upload_token(error: type[Exception]) -> str:
    """The Hub token from ``HF_TOKEN`` or the stored login; raises ``error`` at once, before any work, without one or
    when the Hub cannot be reached (an upload offline would fail only after the folder is staged)."""
    from huggingface_hub import constants, get_token

    token = get_token()
    if not token:
        raise error(
            "no Hugging Face token: set HF_TOKEN to a token with write access, or run `hf auth login`; "
            "use --dry-run OUT to write the files without uploading"
        )
    if constants.HF_HUB_OFFLINE:
        raise error("HF_HUB_OFFLINE is set, so nothing can be uploaded: unset it, or use --dry-run OUT")
    offline = hub_unreachable()
    if offline is not None:
        raise error(f"{offline}. Connect and push again, or use --dry-run OUT to write the files without uploading")
    return token


def commit_folder(
    folder: Path,
    files: list[str],
    *,
    repo_id: str,
    repo_type: str,
    private: bool,
    revision: str,
    token: str,
    message: str,
    error: type[Exception],
    replace_prefix: str | None = None,
) -> str:
    """Commit ``files`` (paths relative to ``folder``) to the repo in one commit; returns the commit URL.

    With ``replace_prefix``, files already in the repo under that prefix and not in ``files`` are deleted by the
    same commit (e.g. ``data/``: Parquet shards of an earlier push with more shards).
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        operations: list[Any] = []
        if replace_prefix is not None:
            existing = api.list_repo_files(repo_id, repo_type=repo_type, revision=revision)
            stale = [p for p in existing if p.startswith(replace_prefix) and p not in files]
            operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
        operations += [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)) for rel in files]
        commit = api.create_commit(repo_id, operations, commit_message=message, repo_type=repo_type, revision=revision)
    except Exception as e:  # the Hub client raises HTTP, offline and OS errors alike; all mean "not uploaded"
        raise error(
            f"upload to {repo_url(repo_id, repo_type)} (revision {revision}) failed: "
            f"{type(e).__name__}: {str(e).rstrip('.')}. Check your network and that HF_TOKEN can write to "
            f"{repo_id}; --dry-run OUT writes the files without uploading"
        ) from e
    return str(getattr(commit, "commit_url", None) or repo_url(repo_id, repo_type))
