"""The user model's Redis layout, shared by the fold that writes it (services/usermodel)
and the readers (services/query, the digest, replays): the keys, the namespace pointer
and its watermarks, the decay rates, and reading a user or a tenant's lists back."""

from services.common.userstore.decay import DecayRates
from services.common.userstore.digest import digest_namespace
from services.common.userstore.keys import TenantKeys, UserKeys, UserModelKeys
from services.common.userstore.namespace import Namespaces, RedisWatermarks
from services.common.userstore.read import Interaction, UserModel, UserModelReader

__all__ = [
    "DecayRates",
    "Interaction",
    "Namespaces",
    "RedisWatermarks",
    "TenantKeys",
    "UserKeys",
    "UserModel",
    "UserModelKeys",
    "UserModelReader",
    "digest_namespace",
]
