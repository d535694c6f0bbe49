"""The My Number Card JPKI application's identifiers and the ISO 7816 status words used here."""

from __future__ import annotations

JPKI_AID = bytes.fromhex("D392F000260100000001")

# Elementary files of the JPKI application (user-authentication side; the signing side is
# not modelled by the software card).
EF_TOKEN_INFO = 0x0006
EF_AUTH_CERT = 0x000A
EF_AUTH_CA_CERT = 0x000B
EF_AUTH_KEY = 0x0017
EF_AUTH_PIN = 0x0018

TOKEN_INFO = b"JPKIAPICCTOKEN2".ljust(32, b" ")
AUTH_PIN_TRIES = 3
AUTH_PIN_LENGTH = 4

SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")

CLA_ISO = 0x00
CLA_PROPRIETARY = 0x80
INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_VERIFY = 0x20
INS_COMPUTE_SIGNATURE = 0x2A
INS_GET_RESPONSE = 0xC0

SW_OK = 0x9000
SW_EOF_BEFORE_LE = 0x6282  # end of file reached before reading Le bytes
SW_WRONG_LENGTH = 0x6700
SW_INCOMPATIBLE_FILE = 0x6981  # command incompatible with file structure (key, PIN EFs)
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_AUTH_BLOCKED = 0x6983  # assumed for a locked PIN (DOMAIN.md)
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_NO_CURRENT_EF = 0x6986
SW_WRONG_DATA = 0x6A80
SW_FILE_NOT_FOUND = 0x6A82
SW_WRONG_P1P2 = 0x6A86
SW_REF_DATA_NOT_FOUND = 0x6A88
SW_WRONG_OFFSET = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_PIN_TRIES_BASE = 0x63C0  # 63 Cx: x tries left
