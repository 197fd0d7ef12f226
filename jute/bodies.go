package jute

// NewRequestBody returns an empty record for the body of a request with opcode op.
// Opcodes with no body (ping, closeSession, whoAmI) give Empty.
func NewRequestBody(op OpCode) (Record, error) {
	switch op {
	case OpCreate, OpCreate2, OpCreateContainer:
		return new(CreateRequest), nil
	case OpCreateTTL:
		return new(CreateTTLRequest), nil
	case OpDelete, OpCheck:
		return new(PathVersionRequest), nil
	case OpDeleteContainer:
		return new(PathRequest), nil
	case OpExists, OpGetData, OpGetChildren, OpGetChildren2:
		return new(PathWatchRequest), nil
	case OpSetData:
		return new(SetDataRequest), nil
	case OpGetACL, OpSync, OpGetEphemerals, OpGetAllChildrenNumber:
		return new(PathRequest), nil
	case OpSetACL:
		return new(SetACLRequest), nil
	case OpMulti, OpMultiRead:
		return new(MultiRequest), nil
	case OpReconfig:
		return new(ReconfigRequest), nil
	case OpCheckWatches, OpRemoveWatches, OpAddWatch:
		return new(PathTypeRequest), nil
	case OpAuth:
		return new(AuthPacket), nil
	case OpSetWatches:
		return new(SetWatches), nil
	case OpSetWatches2:
		return new(SetWatches2), nil
	case OpSASL:
		return new(GetSASLRequest), nil
	case OpPing, OpCloseSession, OpWhoAmI:
		return Empty{}, nil
	}
	return nil, ErrUnknownOpCode
}

// NewResponseBody returns an empty record for the body of a successful (Err == 0) reply
// to a request with opcode op; Empty where the reply has none. A notification (xid -1)
// carries a WatcherEvent, whatever op: use OpNotification.
func NewResponseBody(op OpCode) (Record, error) {
	switch op {
	case OpNotification:
		return new(WatcherEvent), nil
	case OpCreate, OpSync:
		return new(PathResponse), nil
	case OpCreate2, OpCreateContainer, OpCreateTTL:
		return new(Create2Response), nil
	case OpExists, OpSetData, OpSetACL:
		return new(StatResponse), nil
	case OpGetData, OpReconfig:
		return new(GetDataResponse), nil
	case OpGetACL:
		return new(GetACLResponse), nil
	case OpGetChildren, OpGetEphemerals:
		return new(StringsResponse), nil
	case OpGetChildren2:
		return new(GetChildren2Response), nil
	case OpGetAllChildrenNumber, OpAddWatch:
		return new(IntResponse), nil
	case OpMulti, OpMultiRead:
		return new(MultiResponse), nil
	case OpWhoAmI:
		return new(WhoAmIResponse), nil
	case OpSASL:
		return new(SetSASLResponse), nil
	case OpDelete, OpCheck, OpDeleteContainer, OpPing, OpCloseSession, OpAuth, OpSetWatches,
		OpSetWatches2, OpCheckWatches, OpRemoveWatches:
		return Empty{}, nil
	}
	return nil, ErrUnknownOpCode
}
