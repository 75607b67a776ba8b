//! Formats other than KCP: each mistake is one error at its token, and each layer's stub has
//! its format's API, so nothing else fails.

kcp::kcp_layer! { struct Unknown { in_shape: [4, 3], out_shape: [2, 2], format: tucker, rank: 2 } }
kcp::kcp_layer! { struct WrongKey { in_shape: [4, 3], out_shape: [2, 2], format: tt, rank: 2, ranks: [1, 2, 1] } }
kcp::kcp_layer! { struct Missing { in_shape: [4, 3], out_shape: [2, 2], format: bt, ranks: [2, 3] } }
kcp::kcp_layer! { struct TtEnds { in_shape: [4, 3], out_shape: [2, 2], format: tt, ranks: [2, 3, 1] } }
kcp::kcp_layer! { struct Ring { in_shape: [4, 3], out_shape: [2, 2], format: tr, ranks: [2, 3, 1] } }
kcp::kcp_layer! { struct ZeroRank { in_shape: [4, 3], out_shape: [2, 2], format: tr, ranks: [2, 0, 1, 1] } }
kcp::kcp_layer! { struct Training { in_shape: [4, 3], out_shape: [2, 2], format: cp, rank: 2, backward: everything } }
kcp::kcp_layer! { struct KcpRanks { in_shape: [4, 3], out_shape: [2, 2], rank: 2, ranks: [1, 1, 1] } }
kcp::kcp_layer! { struct NotAList { in_shape: [4, 3], out_shape: [2, 2], format: tt, ranks: 4 } }

fn main() {
    let _ = (Unknown::IN, KcpRanks::RANK);
    let _ = (WrongKey::FORMAT, Missing::CORE_NAMES, TtEnds::CORE_SHAPES, Ring::PARAMS, ZeroRank::PLAN);
    let _ = (Training::random(1), NotAList::zeros());
}
