"""Repositories, collaborators, commits and their files: contents, compare, tarball archives."""

from __future__ import annotations

import base64
import hashlib
import io
import secrets
import tarfile
import time
from collections.abc import Iterable
from urllib.parse import quote

from aiohttp import web

from tests.fake_github.state import (
    LEVELS,
    Commit,
    Ctx,
    Reply,
    Repo,
    blob_sha,
    handles,
    is_sha,
    iso,
    node_id,
)


class ReposMixin:
    """Repositories and their content."""

    def add_repo(
        self, full_name: str, id: int | None = None, *, private: bool = False, default_branch: str = "main"
    ) -> Repo:
        repo = Repo(full_name, id if id is not None else next(self._ids), private, default_branch)
        self.repos[full_name.lower()] = repo
        return repo

    def set_permission(self, repo: str, user: str, level: str) -> None:
        """The user's permission on the repository: admin, maintain, write, triage, read or none."""
        assert level in LEVELS, f"level must be one of {LEVELS}"
        self._repo(repo).collaborators[user.lower()] = level
        self._user_id(user)

    @handles("repos/get-collaborator-permission-level")
    def _get_permission(self, ctx: Ctx):
        user = ctx.params["username"]
        level = self._level(ctx.repo, user)
        permission = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read"}.get(level, level)
        flags = self._permission_flags(level)
        user_json = self._user_json(user) | {"permissions": flags, "role_name": level}
        return 200, {"permission": permission, "role_name": level, "user": user_json}, {}

    @staticmethod
    def _permission_flags(level: str) -> dict[str, bool]:
        rank = LEVELS.index(level)
        needs = {"admin": "admin", "maintain": "maintain", "push": "write", "triage": "triage", "pull": "read"}
        return {name: rank <= LEVELS.index(needed) for name, needed in needs.items()}

    def _level(self, repo: Repo, login: str) -> str:
        """A person's permission on a repository: a collaborator's level, else read on a public one."""
        return repo.collaborators.get(login.lower(), "none" if repo.private else "read")

    def _repo(self, name: str) -> Repo:
        try:
            return self.repos[name.lower()]
        except KeyError:
            raise KeyError(f"no repository {name!r}: add it with add_repo() or add_installation()") from None

    def _resolve(self, repo: Repo, ref: str) -> str | None:
        """The commit SHA a ref names: a SHA, the default branch, or the head branch of one of its pull requests."""
        ref = ref.removeprefix("refs/heads/").removeprefix("heads/")
        if is_sha(ref):
            return ref
        if ref == repo.default_branch:
            return repo.default_sha
        if ref in repo.branches:
            return repo.branches[ref]
        heads = [p for p in self.pulls.values() if p.repo == repo.full_name and not p.fork and p.head_ref == ref]
        return heads[-1].head_sha if heads else None

    def _repo_json(self, repo: Repo, *, fork: bool = False) -> dict:
        api, html = f"{self.base_url}/repos/{repo.full_name}", f"https://github.com/{repo.full_name}"
        owner_type = next(
            (i.account_type for i in self.installations.values() if i.account.lower() == repo.owner.lower()), "User"
        )
        created = iso(self._started - 365 * 86400)
        templates = {
            "archive_url": "/{archive_format}{/ref}",
            "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}",
            "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}",
            "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}",
            "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}",
            "contributors_url": "/contributors",
            "deployments_url": "/deployments",
            "downloads_url": "/downloads",
            "events_url": "/events",
            "forks_url": "/forks",
            "git_commits_url": "/git/commits{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "hooks_url": "/hooks",
            "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}",
            "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}",
            "languages_url": "/languages",
            "merges_url": "/merges",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}",
            "releases_url": "/releases{/id}",
            "stargazers_url": "/stargazers",
            "statuses_url": "/statuses/{sha}",
            "subscribers_url": "/subscribers",
            "subscription_url": "/subscription",
            "tags_url": "/tags",
            "teams_url": "/teams",
            "trees_url": "/git/trees{/sha}",
        }
        return {
            "id": repo.id,
            "node_id": node_id("R", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": self._user_json(repo.owner, owner_type),
            "private": repo.private,
            "html_url": html,
            "description": None,
            "fork": fork,
            "url": api,
            **{k: api + v for k, v in templates.items()},
            "git_url": f"git://github.com/{repo.full_name}.git",
            "ssh_url": f"git@github.com:{repo.full_name}.git",
            "clone_url": f"{html}.git",
            "svn_url": html,
            "mirror_url": None,
            "homepage": None,
            "language": "HCL",
            "forks_count": 0,
            "forks": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "watchers": 0,
            "size": 108,
            "default_branch": repo.default_branch,
            "open_issues_count": 0,
            "open_issues": 0,
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": True,
            "has_wiki": True,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "private" if repo.private else "public",
            "pushed_at": created,
            "created_at": created,
            "updated_at": created,
            "license": None,
            "allow_forking": True,
            "web_commit_signoff_required": False,
        }

    # commits and files

    def add_commit(
        self,
        repo: str,
        files: dict[str, str | bytes],
        *,
        sha: str | None = None,
        parents: Iterable[str] | None = None,
        branch: str | None = None,
        message: str = "A change",
        author: str = "octocat",
    ) -> str:
        """A commit holding exactly `files` (path -> text or bytes), seen by the contents, commits, compare and
        tarball endpoints; returns its SHA. `sha` may be a pull request's head SHA; `branch` moves that branch
        (the default branch too) to it; `parents` defaults to the branch's previous commit."""
        r = self._repo(repo)
        data = {path.strip("/"): text.encode() if isinstance(text, str) else text for path, text in files.items()}
        if parents is None:
            previous = r.branches.get(branch or "") if branch else None
            parents = [previous] if previous else []
        sha = (
            sha or hashlib.sha1(f"{r.full_name}:{sorted(data.items())}:{list(parents)}:{message}".encode()).hexdigest()
        )
        assert is_sha(sha), f"not a 40-hex SHA: {sha!r}"
        r.commits[sha] = Commit(sha, data, list(parents), message, author, time.time())
        if branch:
            r.branches[branch] = sha
        return sha

    def _commit(self, repo: Repo, ref: str, *, status: int = 404) -> Commit:
        """The commit a ref names; a SHA the test never gave files is an empty commit (as check runs assume)."""
        sha = self._resolve(repo, ref)
        if sha is None:
            raise Reply(status, f"No commit found for the ref {ref}")
        return repo.commits.get(sha) or Commit(sha, {}, [], "A change", repo.owner, self._started)

    def _git_user(self, login: str, at: float) -> dict:
        return {"name": login, "email": f"{self._user_id(login)}+{login}@users.noreply.github.com", "date": iso(at)}

    def _commit_json(self, repo: Repo, commit: Commit, *, files: bool = False) -> dict:
        api = f"{self.base_url}/repos/{repo.full_name}"
        tree = hashlib.sha1(repr(sorted(commit.files.items())).encode()).hexdigest()
        data = {
            "url": f"{api}/commits/{commit.sha}",
            "sha": commit.sha,
            "node_id": node_id("C", int(commit.sha[:12], 16)),
            "html_url": f"https://github.com/{repo.full_name}/commit/{commit.sha}",
            "comments_url": f"{api}/commits/{commit.sha}/comments",
            "commit": {
                "url": f"{api}/git/commits/{commit.sha}",
                "author": self._git_user(commit.author, commit.at),
                "committer": self._git_user(commit.author, commit.at),
                "message": commit.message,
                "comment_count": 0,
                "tree": {"sha": tree, "url": f"{api}/git/trees/{tree}"},
            },
            "author": self._user_json(commit.author),
            "committer": self._user_json(commit.author),
            "parents": [
                {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"https://github.com/{repo.full_name}/commit/{p}"}
                for p in commit.parents
            ],
        }
        if files:
            base = (
                repo.commits.get(commit.parents[0]).files
                if commit.parents and commit.parents[0] in repo.commits
                else {}
            )
            changed = self._diff_files(repo, commit.sha, base, commit.files)
            data["files"] = changed
            data["stats"] = {
                "additions": sum(f["additions"] for f in changed),
                "deletions": sum(f["deletions"] for f in changed),
                "total": sum(f["changes"] for f in changed),
            }
        return data

    def _diff_files(self, repo: Repo, sha: str, old: dict[str, bytes], new: dict[str, bytes]) -> list[dict]:
        """Changed files between two trees, shaped as pulls/list-files and compare show them."""
        found = []
        for path in sorted(set(old) | set(new)):
            if old.get(path) == new.get(path):
                continue
            before, after = old.get(path, b"").splitlines(), new.get(path, b"").splitlines()
            status = "added" if path not in old else "removed" if path not in new else "modified"
            found.append(
                self._file_json(
                    repo,
                    sha,
                    path,
                    status,
                    len(after) if status != "removed" else 0,
                    len(before) if status != "added" else 0,
                    new.get(path, old.get(path, b"")),
                )
            )
        return found

    def _file_json(
        self, repo: Repo, sha: str, path: str, status: str, additions: int, deletions: int, data: bytes = b""
    ) -> dict:
        quoted = quote(path)
        return {
            "sha": blob_sha(data),
            "filename": path,
            "status": status,
            "additions": additions,
            "deletions": deletions,
            "changes": additions + deletions,
            "blob_url": f"https://github.com/{repo.full_name}/blob/{sha}/{quoted}",
            "raw_url": f"https://github.com/{repo.full_name}/raw/{sha}/{quoted}",
            "contents_url": f"{self.base_url}/repos/{repo.full_name}/contents/{quoted}?ref={sha}",
        }

    # handlers

    @handles("repos/get")
    def _get_repo(self, ctx: Ctx):
        data = self._repo_json(ctx.repo) | {"network_count": 0, "subscribers_count": 0}
        if ctx.user is not None:
            level = self._level(ctx.repo, ctx.user.login)
            data["permissions"] = self._permission_flags(level)
        return 200, data, {}

    @handles("repos/get-commit")
    def _get_commit(self, ctx: Ctx):
        commit = self._commit(ctx.repo, ctx.params["ref"], status=422)
        return 200, self._commit_json(ctx.repo, commit, files=True), {}

    @handles("repos/compare-commits-with-basehead")
    def _compare(self, ctx: Ctx):
        base_ref, dots, head_ref = ctx.params["basehead"].partition("...")
        if not dots:
            raise Reply(404, "Not Found")
        repo = ctx.repo
        base, head = self._commit(repo, base_ref), self._commit(repo, head_ref)
        ahead = self._ancestry(repo, head.sha)
        behind = self._ancestry(repo, base.sha)
        merge_base = next((s for s in ahead if s in behind), base.sha)
        commits = [
            repo.commits[s]
            for s in reversed(ahead[: ahead.index(merge_base)] if merge_base in ahead else ahead)
            if s in repo.commits
        ]
        behind_by = behind.index(merge_base) if merge_base in behind else 0
        ahead_by = len(commits)
        status = (
            "identical"
            if base.sha == head.sha
            else "ahead"
            if not behind_by
            else "behind"
            if not ahead_by
            else "diverged"
        )
        mb = repo.commits.get(merge_base) or base
        api, html = f"{self.base_url}/repos/{repo.full_name}", f"https://github.com/{repo.full_name}"
        basehead = ctx.params["basehead"]
        page, links = self._paginate(ctx, commits, default=250)
        return (
            200,
            {
                "url": f"{api}/compare/{basehead}",
                "html_url": f"{html}/compare/{basehead}",
                "permalink_url": f"{html}/compare/{repo.owner}:{base.sha[:7]}...{repo.owner}:{head.sha[:7]}",
                "diff_url": f"{html}/compare/{basehead}.diff",
                "patch_url": f"{html}/compare/{basehead}.patch",
                "base_commit": self._commit_json(repo, base),
                "merge_base_commit": self._commit_json(repo, mb),
                "status": status,
                "ahead_by": ahead_by,
                "behind_by": behind_by,
                "total_commits": ahead_by,
                "commits": [self._commit_json(repo, c) for c in page],
                "files": self._diff_files(repo, head.sha, mb.files, head.files)[:300],
            },
            links,
        )

    def _ancestry(self, repo: Repo, sha: str) -> list[str]:
        """`sha` and its first-parent ancestors, newest first."""
        found = [sha]
        while (commit := repo.commits.get(found[-1])) is not None and commit.parents and commit.parents[0] not in found:
            found.append(commit.parents[0])
        return found

    @handles("repos/get-content")
    def _get_content(self, ctx: Ctx):
        repo, path = ctx.repo, ctx.params["path"].strip("/")
        commit = self._commit(repo, ctx.query.get("ref") or repo.default_branch)
        accept = ctx.request.headers.get("Accept", "")
        if path in commit.files:
            data = commit.files[path]
            if "raw" in accept:  # application/vnd.github.raw(+json): the bytes themselves
                return 200, data, {"Content-Type": "application/vnd.github.raw"}
            if len(data) > 1024 * 1024:  # GitHub: over 1 MB, JSON carries no content; ask for the raw media type
                return 200, self._content_json(repo, commit.sha, path, data) | {"content": "", "encoding": "none"}, {}
            encoded = base64.b64encode(data).decode()
            content = "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n"
            return (
                200,
                self._content_json(repo, commit.sha, path, data) | {"content": content, "encoding": "base64"},
                {},
            )
        prefix = f"{path}/" if path else ""
        children = sorted({p[len(prefix) :].split("/")[0] for p in commit.files if p.startswith(prefix)})
        if not children:
            raise Reply(404, "Not Found")
        entries = []
        for name in children:
            full = prefix + name
            if full in commit.files:
                entries.append(self._content_json(repo, commit.sha, full, commit.files[full]))
            else:
                entries.append(self._content_json(repo, commit.sha, full, None))
        return 200, entries, {}

    def _content_json(self, repo: Repo, sha: str, path: str, data: bytes | None) -> dict:
        api = f"{self.base_url}/repos/{repo.full_name}"
        kind = "file" if data is not None else "dir"
        blob = blob_sha(data) if data is not None else hashlib.sha1(f"{sha}:{path}".encode()).hexdigest()
        url = f"{api}/contents/{quote(path)}?ref={sha}"
        html = f"https://github.com/{repo.full_name}/{'blob' if kind == 'file' else 'tree'}/{sha}/{quote(path)}"
        git = f"{api}/git/{'blobs' if kind == 'file' else 'trees'}/{blob}"
        return {
            "type": kind,
            "size": len(data) if data is not None else 0,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": blob,
            "url": url,
            "git_url": git,
            "html_url": html,
            "download_url": f"https://raw.githubusercontent.com/{repo.full_name}/{sha}/{quote(path)}"
            if data is not None
            else None,
            "_links": {"self": url, "git": git, "html": html},
        }

    @handles("repos/download-tarball-archive")
    def _download_tarball(self, ctx: Ctx):
        commit = self._commit(ctx.repo, ctx.params["ref"])
        key = secrets.token_urlsafe(16)
        self._archives[key] = (ctx.repo.full_name, commit.sha, time.time() + 300)
        location = f"{self.base_url}{ARCHIVE_PREFIX}/{ctx.repo.full_name}/legacy.tar.gz/{commit.sha}?token={key}"
        return 302, None, {"Location": location}

    def archive(self, repo: str, sha: str) -> bytes:
        """The .tar.gz GitHub would serve for a commit: one top directory `<owner>-<repo>-<short sha>/`."""
        r = self._repo(repo)
        commit = self._commit(r, sha)
        top = f"{r.owner}-{r.name}-{commit.sha[:7]}"
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            directory = tarfile.TarInfo(top)
            directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, 0o775, int(commit.at)
            tar.addfile(directory)
            for path, data in sorted(commit.files.items()):
                info = tarfile.TarInfo(f"{top}/{path}")
                info.size, info.mode, info.mtime = len(data), 0o664, int(commit.at)
                tar.addfile(info, io.BytesIO(data))
        return out.getvalue()

    async def _serve_archive(self, request: web.Request) -> web.Response:
        """The archive host (GitHub: codeload.github.com): no authentication, a short-lived token in the URL."""
        entry = self._archives.get(request.query.get("token", ""))
        repo, sha = f"{request.match_info['owner']}/{request.match_info['repo']}", request.match_info["sha"]
        if entry is None or entry[2] < time.time() or (entry[0].lower(), entry[1]) != (repo.lower(), sha):
            return web.Response(status=404, text="404: Not Found")
        self.archive_downloads += 1
        name = f"{entry[0].replace('/', '-')}-{sha[:7]}.tar.gz"
        return web.Response(
            body=self.archive(entry[0], sha),
            content_type="application/x-gzip",
            headers={"Content-Disposition": f"attachment; filename={name}"},
        )


ARCHIVE_PREFIX = "/_codeload"  # where the fake serves tarballs: outside the API, as GitHub's codeload host is
