"""Object storage by URL (`file://`, `s3://`): one interface, one S3 client and error policy."""

from nextoffer.storage.base import BACKUP_SETTING, ObjectInfo, ObjectStore
from nextoffer.storage.errors import ENDPOINT_SETTING, is_s3_library_error, is_unreachable
from nextoffer.storage.files import FileStore
from nextoffer.storage.s3 import S3Store, s3_client
from nextoffer.storage.urls import absolute_url, file_url_path, open_prefix

__all__ = [
    "BACKUP_SETTING",
    "ENDPOINT_SETTING",
    "FileStore",
    "ObjectInfo",
    "ObjectStore",
    "S3Store",
    "absolute_url",
    "file_url_path",
    "is_s3_library_error",
    "is_unreachable",
    "open_prefix",
    "s3_client",
]
