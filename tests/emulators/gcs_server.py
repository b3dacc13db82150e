#!/usr/bin/env python3
"""A GCS-compatible server for the gs:// tests: PyPI's gcp-storage-emulator,
in memory, with one bucket, on 127.0.0.1:PORT.

The emulator serves the JSON API (list) and the XML-style download and
upload paths that object_store's GCS client uses, but those responses carry
no ETag or Last-Modified header, which real GCS always sends and
object_store requires; and it lacks the XML API's bucket listing
(`GET /BUCKET?list-type=2&prefix=…`), which object_store's GCS client uses.
This launcher adds the two headers from the object's own metadata (etag,
updated) and answers the XML listing from the emulator's own storage
(`get_file_list`, the JSON API's listing); it changes nothing else.

Usage: gcs_server.py PORT BUCKET
"""
import email.utils
import sys
import time
from datetime import datetime

from gcp_storage_emulator.handlers import objects

def _with_validators(handler):
    def wrapped(request, response, storage, *args, **kwargs):
        handler(request, response, storage, *args, **kwargs)
        _add_validators(request, response, storage)

    return wrapped


def _add_validators(request, response, storage):
    try:
        obj = storage.get_file_obj(
            request.params["bucket_name"], request.params["object_id"]
        )
    except Exception:  # not found: the emulator already answered 404
        return
    response["ETag"] = '"{}"'.format(obj.get("etag") or obj.get("md5Hash"))
    updated = datetime.fromisoformat(obj["updated"].replace("Z", "+00:00"))
    response["Last-Modified"] = email.utils.format_datetime(updated, usegmt=True)


# Before the server module binds its routes.
objects.download = _with_validators(objects.download)
objects.xml_upload = _with_validators(objects.xml_upload)

from gcp_storage_emulator import server as _server  # noqa: E402
from gcp_storage_emulator.server import create_server  # noqa: E402
from xml.sax.saxutils import escape  # noqa: E402


def _xml_list(request, response, storage, *args, **kwargs):
    q = lambda k: (request.query.get(k) or [None])[0]  # noqa: E731
    prefix, delimiter = q("prefix") or "", q("delimiter")
    files, prefixes = storage.get_file_list(
        request.params["bucket_name"], prefix or None, delimiter, None
    )
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<ListBucketResult xmlns="http://doc.s3.amazonaws.com/2006-03-01">',
        "<Name>{}</Name><Prefix>{}</Prefix>".format(
            escape(request.params["bucket_name"]), escape(prefix)
        ),
        "<KeyCount>{}</KeyCount><IsTruncated>false</IsTruncated>".format(len(files)),
    ]
    for f in files:
        parts.append(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified>"
            '<ETag>"{}"</ETag><Size>{}</Size></Contents>'.format(
                escape(f["name"]), f["updated"], escape(f.get("etag") or ""), f["size"]
            )
        )
    for p in prefixes:
        parts.append("<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>".format(escape(p)))
    parts.append("</ListBucketResult>")
    response.write_file("".join(parts).encode("utf-8"), content_type="application/xml")


_server.HANDLERS = ((r"^/(?P<bucket_name>[-.\w]+)$", {_server.GET: _xml_list}),) + _server.HANDLERS

port, bucket = int(sys.argv[1]), sys.argv[2]
server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
server.start()
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    server.stop()
