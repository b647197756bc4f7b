use std::vec;

use crate::{
    MAX_FRAME_LEN, Reply, Request, decode_reply, decode_request, encode_reply, encode_request,
};
use proptest::prelude::*;

proptest! {
    #[test]
    fn request_round_trips(request: Request) {
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let len = encode_request(&request, &mut buf).unwrap();
        prop_assert_eq!(decode_request(&buf[..len]).unwrap(), request);
    }

    #[test]
    fn reply_round_trips(reply: Reply) {
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let len = encode_reply(&reply, &mut buf).unwrap();
        prop_assert_eq!(decode_reply(&buf[..len]).unwrap(), reply);
    }
}
