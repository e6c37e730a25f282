//! Matrix products: the planner's choice, and every kernel of the family forced.

use super::*;

/// Matrix products on the shapes that break kernels, through each kernel.
pub(super) fn entries() -> Vec<OpEntry> {
    let mut ops = Vec::new();
    // Products for the planner's choice: the shapes that break kernels plus skinny,
    // long-K and batched ones (each kernel of the family is forced below).
    let products: &[(&[usize], &[usize])] = &[
        (&[1, 1], &[1, 1]),
        (&[3, 7], &[7, 5]),
        (&[65, 3], &[3, 63]),
        (&[33, 65], &[65, 31]),
        (&[2, 3, 4], &[2, 4, 5]),
        (&[2, 1, 3, 4], &[3, 4, 5]),
        (&[3, 4], &[2, 4, 5]),
        (&[1, 2, 3, 4], &[3, 1, 4, 2]),
        (&[7], &[7, 3]),
        (&[3, 7], &[7]),
        (&[5], &[5]),
        (&[1, 300], &[300, 2]),
        (&[2, 3, 260], &[260, 4]),
        (&[4, 1030], &[1030, 3]),
    ];
    ops.push(product_entry(
        "matmul",
        &["matmul_small_fwd", "matmul_block_fwd", "sum_fwd"],
        products
            .iter()
            .map(|&(a, b)| (a, b, MatmulChoice::AUTO))
            .collect(),
    ));
    let forced = |kernel, splits| MatmulChoice { kernel, splits };
    let tile128 = forced(MatmulKernel::Tile128, 0);
    ops.push(product_entry(
        "matmul_tile128",
        &["matmul_tile_fwd"],
        vec![
            (&[3, 33], &[33, 5], tile128),
            (&[129, 12], &[12, 130], tile128),
            (&[2, 64, 24], &[24, 132], tile128),
            (&[2, 1, 7, 9], &[3, 9, 131], tile128),
        ],
    ));
    let tile64 = forced(MatmulKernel::Tile64, 0);
    ops.push(product_entry(
        "matmul_tile64",
        &["matmul_tile_fwd"],
        vec![
            (&[3, 17], &[17, 5], tile64),
            (&[65, 20], &[20, 66], tile64),
            (&[2, 3, 36], &[36, 68], tile64),
            (&[64, 33], &[2, 33, 64], tile64),
        ],
    ));
    ops.push(product_entry(
        "matmul_small",
        &["matmul_small_fwd"],
        vec![
            (&[1, 40], &[40, 1], forced(MatmulKernel::Small16x16, 0)),
            (&[17, 9], &[9, 18], forced(MatmulKernel::Small16x16, 0)),
            (&[3, 16, 8], &[8, 17], forced(MatmulKernel::Small16x32, 0)),
            (&[33, 2], &[2, 7], forced(MatmulKernel::Small32x16, 0)),
            (&[33, 5], &[5, 65], forced(MatmulKernel::Small32x32, 0)),
            (&[2, 31, 12], &[12, 33], forced(MatmulKernel::Small32x32, 0)),
        ],
    ));
    // The block kernels (software adapters), forced on any adapter: aligned shapes take
    // the vec4 loads (in every layout, through the backward's transposed operands),
    // the others the scalar ones, and K tails shorter than 4.
    ops.push(product_entry(
        "matmul_block",
        &["matmul_block_fwd"],
        vec![
            (&[8, 12], &[12, 16], forced(MatmulKernel::Block64, 0)),
            (&[65, 20], &[20, 68], forced(MatmulKernel::Block64, 0)),
            (&[3, 17], &[17, 5], forced(MatmulKernel::Block64, 0)),
            (&[2, 36, 9], &[9, 40], forced(MatmulKernel::Block32, 0)),
            (&[2, 1, 7, 9], &[3, 9, 33], forced(MatmulKernel::Block32, 0)),
            (&[16, 24], &[2, 24, 64], forced(MatmulKernel::Block16x64, 0)),
            (&[17, 6], &[6, 70], forced(MatmulKernel::Block16x64, 0)),
            (&[64, 28], &[28, 12], forced(MatmulKernel::Block64x16, 0)),
            (&[66, 5], &[5, 3], forced(MatmulKernel::Block64x16, 0)),
            (&[2, 9, 4], &[4, 18], forced(MatmulKernel::Block16, 0)),
        ],
    ));
    ops.push(product_entry(
        "matmul_splitk",
        &["matmul_tile_fwd", "matmul_small_fwd", "sum_fwd"],
        vec![
            (&[5, 300], &[300, 7], forced(MatmulKernel::Tile128, 3)),
            (&[2, 17, 70], &[70, 9], forced(MatmulKernel::Tile64, 2)),
            (&[3, 500], &[500, 4], forced(MatmulKernel::Small16x16, 5)),
            (&[3, 4, 100], &[100, 5], forced(MatmulKernel::Small32x32, 2)),
            (&[2, 1, 3, 64], &[4, 64, 6], forced(MatmulKernel::Tile64, 4)),
            // One split over K past 1,024: one dispatch (a workgroup loops over all of
            // it); past the watchdog bound of 8,192, chunks one after another (passes).
            (&[3, 1100], &[1100, 2], forced(MatmulKernel::Small16x16, 1)),
            (&[1, 8200], &[8200, 1], forced(MatmulKernel::Small16x16, 1)),
            (&[2, 1040], &[1040, 3], forced(MatmulKernel::Tile64, 1)),
            (&[4, 300], &[300, 8], forced(MatmulKernel::Block64, 3)),
            (&[3, 1030], &[1030, 4], forced(MatmulKernel::Block32, 1)),
        ],
    ));
    // The one-output-per-thread kernel that benchmarks compare the others against.
    let naive = forced(MatmulKernel::Naive, 0);
    ops.push(product_entry(
        "matmul_naive",
        &["matmul_naive_fwd"],
        vec![
            (&[3, 7], &[7, 5], naive),
            (&[33, 65], &[65, 31], naive),
            (&[2, 3, 4], &[4, 17], naive),
        ],
    ));
    ops
}
