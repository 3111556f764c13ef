"""``m2fp-batch label-studio push|pull LABELS --url URL --project NAME``, ``connect --backend URL``: review in Label Studio.

The API token comes from ``LABEL_STUDIO_API_KEY`` or the variable ``--token-env`` names, never
from the command line. Each prints a JSON summary; push and pull exit 1 when some rows ended as
error rows (an image Label Studio cannot serve, an annotation that cannot be read), connect when
Label Studio's check of the ML backend fails; else 0.
"""

from __future__ import annotations

import argparse
import json

from m2fp_batch.errors import UserError
from m2fp_batch.review.arguments import add_low_score_argument, low_score
from m2fp_batch.reviewed.arguments import add_pull_arguments, rows_per_file

__all__ = ["add_arguments", "main"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("labels", metavar="LABELS", help="the job output (or an export-reviewed dir), local or s3://")
    _server(p)


def _server(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="Label Studio's base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--project", required=True, metavar="NAME", help="the project title (created by push)")
    p.add_argument(
        "--token-env",
        default="LABEL_STUDIO_API_KEY",
        metavar="VAR",
        help="environment variable holding the API token (default LABEL_STUDIO_API_KEY)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``m2fp-batch label-studio``."""
    from m2fp_batch.labelstudio.push import DOCUMENT_ROOT_ENV
    from m2fp_batch.review.convert import VIEWS

    sub = parser.add_subparsers(dest="action", required=True, metavar="push|pull|connect")
    push = sub.add_parser("push", help="create or update the project: one task per ok row, with pre-annotations")
    _common(push)
    push.add_argument(
        "--document-root",
        metavar="DIR",
        help=f"the server's {DOCUMENT_ROOT_ENV} (default: that variable): local images must lie under it",
    )
    push.add_argument("--view", choices=VIEWS, help="push only the rows of this review view (as in `review`)")
    add_low_score_argument(push)
    pull = sub.add_parser("pull", help="write the annotations back in the export-reviewed layout")
    _common(pull)
    add_pull_arguments(
        pull, "rows without an annotation: keep them with the job's labels (unreviewed / not_in_dataset) or drop them"
    )

    connect = sub.add_parser(
        "connect", help="register `serve`'s ML backend on the project (interactive pre-annotation) and check it"
    )
    _server(connect)
    connect.add_argument(
        "--backend", required=True, metavar="URL", help="the backend's base URL: serve's address + /ls"
    )
    connect.add_argument("--title", default="m2fp", help="the backend's title in Label Studio (default: m2fp)")
    connect.add_argument(
        "--ls-auth-env",
        metavar="VAR",
        help="the variable holding the basic-auth USER:PASSWORD the backend requires (serve --ls-auth-env)",
    )


def _connect(client, args: argparse.Namespace) -> int:
    from m2fp_batch.labelstudio.connect import connect
    from m2fp_batch.labelstudio.ml_backend import read_basic_auth

    try:
        auth = read_basic_auth(args.ls_auth_env)
    except ValueError as e:
        raise UserError(str(e)) from None
    summary = connect(client, args.project, args.backend, title=args.title, basic_auth=auth)
    print(json.dumps(summary.to_dict()))
    return 0 if summary.state == "connected" else 1


def main(args: argparse.Namespace) -> int:
    """Run ``m2fp-batch label-studio push|pull``; 0 on success, 1 when some rows became error rows."""
    from m2fp_batch.labelstudio.client import Client, token_from_env

    if args.action == "connect":
        return _connect(Client(args.url, token_from_env(args.token_env)), args)
    if args.action == "push":
        from m2fp_batch.labelstudio.push import default_document_root, push

        score = low_score(args)
        summary = push(
            Client(args.url, token_from_env(args.token_env)),
            args.labels,
            args.project,
            document_root=args.document_root or default_document_root(),
            view=args.view,
            low_score=score,
        )
        print(json.dumps(summary.to_dict()))
        return 1 if summary.image_errors else 0
    from m2fp_batch.labelstudio.pull import pull

    n = rows_per_file(args)
    client = Client(args.url, token_from_env(args.token_env))
    summary = pull(client, args.labels, args.project, args.out, unannotated=args.unannotated, rows_per_file=n)
    print(json.dumps(summary.to_dict()))
    return 1 if summary.errors else 0
