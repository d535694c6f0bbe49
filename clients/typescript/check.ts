// Uses the generated TypeScript stubs the way a vendor's terminal would, so that type-checking
// this file proves the stubs are complete and usable (tests/test_contracts.py runs tsc on it).
import { create, toBinary, fromBinary } from "@bufbuild/protobuf";
import {
  KioskService,
  IssuanceIntentSchema,
  RequestIssuanceRequestSchema,
} from "./gen/konbini/kiosk/v1/kiosk_pb.js";
import { CertificateKind } from "./gen/konbini/common/v1/types_pb.js";

const intent = create(IssuanceIntentSchema, {
  sessionId: "s-1",
  requestId: "r-1",
  municipalityCode: { value: "192015" },
  kind: CertificateKind.RESIDENCE_RECORD,
  copies: 1,
});
const intentBytes: Uint8Array = toBinary(IssuanceIntentSchema, intent);
const request = create(RequestIssuanceRequestSchema, {
  requestId: "r-1",
  sessionId: "s-1",
  intent: intentBytes,
});
const decoded = fromBinary(IssuanceIntentSchema, request.intent);
const method: string = KioskService.method.requestIssuance.name;
export const summary = `${method} ${decoded.requestId}`;
