// torch_powf: bit-exact with float32 torch.pow on an x86 CPU, and within 1 ulp of the exact power.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>

#include "quanto/quantize/torch_pow.hpp"

namespace {

using quanto::bits_to_float;
using quanto::float_to_bits;
using quanto::detail::sleef_powf_u10;
using quanto::detail::torch_powf;

struct pow_case {
  std::uint32_t x;         // float bits of the base
  std::uint32_t y;         // float bits of the exponent
  std::uint32_t expected;  // float bits of torch.pow(x, y)
};

// Recorded from torch 2.15.0 on an AVX2 machine (torch.backends.cpu.get_cpu_capability() ==
// "AVX2", AMD EPYC): torch.pow(t, y) for float32 tensors t whose sizes are multiples of 64, so
// that every element went through the vectorized kernel. y is the Python float passed to torch;
// the rows store it rounded to float (-0.3 is the Python float 0.7 - 1). The "torch differs"
// groups are inputs where SLEEF's powf_u10 is not correctly rounded.
constexpr pow_case kTorchCases[] = {
    // y = -0.3: x in [0, 8), torch differs from the correctly rounded power
    {0x40B94C5Bu, 0xBE99999Au, 0x3F1727C5u},
    {0x40CFA905u, 0xBE99999Au, 0x3F121376u},
    {0x407EC5F0u, 0xBE99999Au, 0x3F2923FEu},
    {0x407EAE0Eu, 0xBE99999Au, 0x3F2928C0u},
    {0x3ED199A0u, 0xBE99999Au, 0x3FA75474u},
    {0x403CD9C6u, 0xBE99999Au, 0x3F390973u},
    {0x40D34AC8u, 0xBE99999Au, 0x3F115174u},
    {0x40D7CD2Eu, 0xBE99999Au, 0x3F106685u},
    {0x3ED0A190u, 0xBE99999Au, 0x3FA7900Bu},
    {0x407CAD9Au, 0xBE99999Au, 0x3F298F63u},
    {0x4042F834u, 0xBE99999Au, 0x3F374679u},
    {0x407223F2u, 0xBE99999Au, 0x3F2BBDADu},
    {0x40B25693u, 0xBE99999Au, 0x3F18E6C6u},
    {0x402A5566u, 0xBE99999Au, 0x3F3EDAEAu},
    {0x4032D6E8u, 0xBE99999Au, 0x3F3C15D8u},
    {0x4078C7F0u, 0xBE99999Au, 0x3F2A5A45u},
    // y = -0.3: x anywhere in the positive range, torch differs from the correctly rounded power
    {0x774757A5u, 0xBE99999Au, 0x2EB60F44u},
    {0x22B96396u, 0xBE99999Au, 0x4817221Bu},
    {0x11850B49u, 0xBE99999Au, 0x4D3FC678u},
    {0x1A7BF355u, 0xBE99999Au, 0x4A93BD0Du},
    {0x6520FC69u, 0xBE99999Au, 0x3428FC79u},
    {0x3EA32060u, 0xBE99999Au, 0x3FB46617u},
    {0x0691108Du, 0xBE99999Au, 0x508D9D93u},
    {0x20CA8693u, 0xBE99999Au, 0x48A90FFDu},
    // y = -0.3: x in [0, 8), ordinary values
    {0x40FB51E2u, 0xBE99999Au, 0x3F09F2CFu},
    {0x40E12DE5u, 0xBE99999Au, 0x3F0E91C6u},
    {0x40FDFD1Du, 0xBE99999Au, 0x3F098313u},
    {0x406C1102u, 0xBE99999Au, 0x3F2D0E08u},
    {0x3F2A6D20u, 0xBE99999Au, 0x3F909E18u},
    {0x3FB6B6A4u, 0xBE99999Au, 0x3F661386u},
    // y = -0.30078125: x in [0, 8), torch differs from the correctly rounded power
    {0x40688476u, 0xBE9A0000u, 0x3F2DAAFDu},
    {0x40CA9CB0u, 0xBE9A0000u, 0x3F12F24Cu},
    {0x40AD615Cu, 0xBE9A0000u, 0x3F19FF2Eu},
    {0x3E3B70C0u, 0xBE9A0000u, 0x3FD5501Au},
    {0x40F26E5Bu, 0xBE9A0000u, 0x3F0B39F1u},
    {0x4027F4ACu, 0xBE9A0000u, 0x3F3F8471u},
    {0x3F1CE2C8u, 0xBE9A0000u, 0x3F944F94u},
    {0x3ECBD240u, 0xBE9A0000u, 0x3FA8DC58u},
    {0x405C7E70u, 0xBE9A0000u, 0x3F3076B3u},
    {0x40D56873u, 0xBE9A0000u, 0x3F10AB79u},
    {0x40AD5A32u, 0xBE9A0000u, 0x3F1A0118u},
    {0x3FA0FBD8u, 0xBE9A0000u, 0x3F6EF0E0u},
    {0x40B657A4u, 0xBE9A0000u, 0x3F17AE13u},
    {0x4075BE00u, 0xBE9A0000u, 0x3F2ACD60u},
    {0x407DC4A6u, 0xBE9A0000u, 0x3F2928BDu},
    {0x40A91381u, 0xBE9A0000u, 0x3F1B2A64u},
    // y = -0.30078125: x anywhere in the positive range, torch differs from the correctly rounded power
    {0x335BC2D2u, 0xBE9A0000u, 0x431BF470u},
    {0x561AE08Eu, 0xBE9A0000u, 0x38A6D184u},
    {0x771AA172u, 0xBE9A0000u, 0x2EB8FC20u},
    {0x0B450F04u, 0xBE9A0000u, 0x4F284A17u},
    {0x2631F4FBu, 0xBE9A0000u, 0x4712B6A2u},
    {0x39B163C8u, 0xBE9A0000u, 0x41310547u},
    {0x4FDB977Au, 0xBE9A0000u, 0x3A8D1EF2u},
    {0x39C983C8u, 0xBE9A0000u, 0x412A5C1Bu},
    // y = -0.30078125: x in [0, 8), ordinary values
    {0x4002C744u, 0xBE9A0000u, 0x3F4E7C6Du},
    {0x407CEFAAu, 0xBE9A0000u, 0x3F295388u},
    {0x40C66FE2u, 0xBE9A0000u, 0x3F13DEA1u},
    {0x40DDB7E9u, 0xBE9A0000u, 0x3F0F045Au},
    {0x40372A36u, 0xBE9A0000u, 0x3F3A969Eu},
    {0x409297F4u, 0xBE9A0000u, 0x3F21F846u},
    // y = -0.30004883: x in [0, 8), torch differs from the correctly rounded power
    {0x3D28D700u, 0xBE99A000u, 0x40269D58u},
    {0x40DABB5Cu, 0xBE99A000u, 0x3F0FCDCAu},
    {0x404C1F1Au, 0xBE99A000u, 0x3F34C29Au},
    {0x3E8CCE20u, 0xBE99A000u, 0x3FBC8D7Du},
    {0x40490D6Eu, 0xBE99A000u, 0x3F35956Du},
    {0x40E2F336u, 0xBE99A000u, 0x3F0E38A0u},
    {0x3E95EF20u, 0xBE99A000u, 0x3FB90832u},
    {0x40AA06D2u, 0xBE99A000u, 0x3F1B1803u},
    {0x4048D200u, 0xBE99A000u, 0x3F35A58Bu},
    {0x40F30DE1u, 0xBE99A000u, 0x3F0B535Cu},
    {0x407804E8u, 0xBE99A000u, 0x3F2A7F87u},
    {0x40C2B123u, 0xBE99A000u, 0x3F14EA93u},
    {0x40BE89E4u, 0xBE99A000u, 0x3F15E208u},
    {0x4037A8B6u, 0xBE99A000u, 0x3F3A94CAu},
    {0x408FCBC1u, 0xBE99A000u, 0x3F231737u},
    {0x40C5BF52u, 0xBE99A000u, 0x3F1438DFu},
    // y = -0.30004883: x anywhere in the positive range, torch differs from the correctly rounded power
    {0x2DD1678Du, 0xBE99A000u, 0x44C07EC4u},
    {0x0F9914B2u, 0xBE99A000u, 0x4DD3E608u},
    {0x2F8B59D6u, 0xBE99A000u, 0x443D5546u},
    {0x14F168B9u, 0xBE99A000u, 0x4C38C409u},
    {0x420FD85Du, 0xBE99A000u, 0x3EAEC2B4u},
    {0x75853831u, 0xBE99A000u, 0x2F3EFFE1u},
    {0x046CF9E1u, 0xBE99A000u, 0x512D8C32u},
    {0x68E702D4u, 0xBE99A000u, 0x330D1577u},
    // y = -0.30004883: x in [0, 8), ordinary values
    {0x4086B7E9u, 0xBE99A000u, 0x3F265026u},
    {0x3F811038u, 0xBE99A000u, 0x3F7F5D85u},
    {0x3FBAD44Cu, 0xBE99A000u, 0x3F648A23u},
    {0x3E43A0E0u, 0xBE99A000u, 0x3FD25502u},
    {0x40FD9881u, 0xBE99A000u, 0x3F098FDFu},
    {0x4033FBD2u, 0xBE99A000u, 0x3F3BB763u},
    // y = 2.5: x in [0, 8), torch differs from the correctly rounded power
    {0x40C6C037u, 0x40200000u, 0x42C046EDu},
    {0x40231A46u, 0x40200000u, 0x4125E410u},
    {0x40B0DF7Cu, 0x40200000u, 0x428FA6ABu},
    {0x405ABC4Eu, 0x40200000u, 0x41ACC217u},
    {0x3E01E300u, 0x40200000u, 0x3BBBC389u},
    {0x405C5F12u, 0x40200000u, 0x41B00197u},
    {0x40B1C68Fu, 0x40200000u, 0x42917DA5u},
    {0x40C85057u, 0x40200000u, 0x42C4145Fu},
    // y = 2.5: x anywhere in the positive range, torch differs from the correctly rounded power
    {0x356E45A9u, 0x40200000u, 0x2655F490u},
    {0x34BED7E8u, 0x40200000u, 0x24ADB81Eu},
    {0x25990C7Du, 0x40200000u, 0x000C81B2u},
    {0x36BF3755u, 0x40200000u, 0x29AE9198u},
    // y = 2.5: x in [0, 8), ordinary values
    {0x40F9FDE2u, 0x40200000u, 0x432A9597u},
    {0x408BFD06u, 0x40200000u, 0x42201BD4u},
    {0x40A00E84u, 0x40200000u, 0x425FCE12u},
    {0x40BA395Du, 0x40200000u, 0x42A365AFu},
    {0x40F0FE78u, 0x40200000u, 0x431BA5A1u},
    {0x40EC2478u, 0x40200000u, 0x4313EE6Du},
    // y = -1.7: x in [0, 8), torch differs from the correctly rounded power
    {0x408B6582u, 0xBFD9999Au, 0x3DA7D333u},
    {0x40D407CEu, 0xBFD9999Au, 0x3D2486F8u},
    {0x40CAED04u, 0xBFD9999Au, 0x3D3145C3u},
    {0x4088CF94u, 0xBFD9999Au, 0x3DAD40B0u},
    {0x4045BB5Cu, 0xBFD9999Au, 0x3E167A97u},
    {0x40CBF22Du, 0xBFD9999Au, 0x3D2FC488u},
    {0x3FDA9A0Cu, 0xBFD9999Au, 0x3ECE1E30u},
    {0x409AAF73u, 0xBFD9999Au, 0x3D8C9C94u},
    // y = -1.7: x anywhere in the positive range, torch differs from the correctly rounded power
    {0x5F7CA8CEu, 0xBFD9999Au, 0x09165A6Cu},
    {0x6554F4F7u, 0xBFD9999Au, 0x00130C04u},
    {0x65411ECEu, 0xBFD9999Au, 0x00167DC2u},
    {0x377DBC3Du, 0xBFD9999Au, 0x4D15457Au},
    // y = -1.7: x in [0, 8), ordinary values
    {0x3F8D6D3Cu, 0xBFD9999Au, 0x3F5811CDu},
    {0x40F75D0Eu, 0xBFD9999Au, 0x3CFD34C9u},
    {0x40A92B4Eu, 0xBFD9999Au, 0x3D71875Du},
    {0x3F104398u, 0xBFD9999Au, 0x4029ACEFu},
    {0x40A2427Au, 0xBFD9999Au, 0x3D81A2E9u},
    {0x3F8C80E4u, 0xBFD9999Au, 0x3F5A7D18u},
    // y = 0.7: x in [0, 8), torch differs from the correctly rounded power
    {0x3F2B5EF8u, 0x3F333333u, 0x3F414C5Eu},
    {0x3EF2C070u, 0x3F333333u, 0x3F17D51Bu},
    {0x40931437u, 0x3F333333u, 0x403A261Bu},
    {0x40674068u, 0x3F333333u, 0x401D4B5Eu},
    {0x40CDDC19u, 0x3F333333u, 0x406B8BACu},
    {0x407FB34Au, 0x3F333333u, 0x4028C234u},
    {0x40CA7F3Bu, 0x3F333333u, 0x4068D877u},
    {0x405439ACu, 0x3F333333u, 0x40141E91u},
    // y = 0.7: x anywhere in the positive range, torch differs from the correctly rounded power
    {0x24AA0693u, 0x3F333333u, 0x2CB35C8Eu},
    {0x1005E13Au, 0x3F333333u, 0x1E3ACD04u},
    {0x6BCFDD2Eu, 0x3F333333u, 0x5E8834BAu},
    {0x4CC957D9u, 0x3F333333u, 0x48C9E505u},
    // y = 0.7: x in [0, 8), ordinary values
    {0x4098912Cu, 0x3F333333u, 0x403EFBF8u},
    {0x3FF6A238u, 0x3F333333u, 0x3FCA94D9u},
    {0x40C0A96Bu, 0x3F333333u, 0x4060DEC5u},
    {0x3FD4EF94u, 0x3F333333u, 0x3FB6C898u},
    {0x3FEA4D64u, 0x3F333333u, 0x3FC36FD9u},
    {0x40DBCA12u, 0x3F333333u, 0x407697A5u},
    // y = 0.1: x in [0, 8), torch differs from the correctly rounded power
    {0x4016072Au, 0x3DCCCCCDu, 0x3F8B61FFu},
    {0x4040AA80u, 0x3DCCCCCDu, 0x3F8EE9CAu},
    {0x408D84FBu, 0x3DCCCCCDu, 0x3F948463u},
    {0x3CF76400u, 0x3DCCCCCDu, 0x3F3466B1u},
    {0x409AD71Cu, 0x3DCCCCCDu, 0x3F95DBF3u},
    {0x409C38C0u, 0x3DCCCCCDu, 0x3F95FE0Au},
    {0x40325782u, 0x3DCCCCCDu, 0x3F8DD03Bu},
    {0x4040DC06u, 0x3DCCCCCDu, 0x3F8EED76u},
    // y = 0.1: x anywhere in the positive range, torch differs from the correctly rounded power
    {0x45B584C4u, 0x3DCCCCCDu, 0x401842ACu},
    {0x09021355u, 0x3DCCCCCDu, 0x3A096867u},
    {0x061394ECu, 0x3DCCCCCDu, 0x39B79D55u},
    {0x50BA4324u, 0x3DCCCCCDu, 0x412F5A66u},
    // y = 0.1: x in [0, 8), ordinary values
    {0x3FD4FEE8u, 0x3DCCCCCDu, 0x3F86AFE7u},
    {0x400E3184u, 0x3DCCCCCDu, 0x3F8AA323u},
    {0x40FC905Fu, 0x3DCCCCCDu, 0x3F9D5FAAu},
    {0x3EA85A70u, 0x3DCCCCCDu, 0x3F650D74u},
    {0x3F51E7A0u, 0x3DCCCCCDu, 0x3F7AF7C9u},
    {0x400557F2u, 0x3DCCCCCDu, 0x3F89BFCDu},
    // y = -10.5: x in [0, 8), torch differs from the correctly rounded power
    {0x4073D448u, 0xC1280000u, 0x3555775Bu},
    {0x407749AAu, 0xC1280000u, 0x35381EDCu},
    {0x3D095F00u, 0xC1280000u, 0x592C688Du},
    {0x40C3981Du, 0xC1280000u, 0x31BEEF88u},
    {0x40BB9E23u, 0xC1280000u, 0x3213D0B1u},
    {0x3F767770u, 0xC1280000u, 0x3FBEAA35u},
    {0x4082605Au, 0xC1280000u, 0x34D3092Eu},
    {0x40D34FAEu, 0xC1280000u, 0x31299DBBu},
    // y = -10.5: x anywhere in the positive range, torch differs from the correctly rounded power
    {0x4583164Cu, 0xC1280000u, 0x0063A9CEu},
    {0x3CD3122Au, 0xC1280000u, 0x5B2BA79Au},
    {0x45809E4Fu, 0xC1280000u, 0x0079AF06u},
    {0x3D3E4D19u, 0xC1280000u, 0x56B4156Fu},
    // y = -10.5: x in [0, 8), ordinary values
    {0x3F1C1230u, 0xC1280000u, 0x433490CDu},
    {0x40FF0E12u, 0xC1280000u, 0x2FBC2FE8u},
    {0x408D9F9Du, 0xC1280000u, 0x3431086Fu},
    {0x40B75D0Eu, 0xC1280000u, 0x323C10CCu},
    {0x3FD61814u, 0xC1280000u, 0x3B93D849u},
    {0x40DCF7D9u, 0xC1280000u, 0x30D43063u},
    // y = 1.5: x in [0, 8), torch differs from the correctly rounded power
    {0x3F9C274Cu, 0x3FC00000u, 0x3FAC793Eu},
    {0x40A0EB0Bu, 0x3FC00000u, 0x41346D6Au},
    {0x3DA2A240u, 0x3FC00000u, 0x3CB75210u},
    {0x40D64C4Du, 0x3FC00000u, 0x418AA426u},
    {0x3E07A380u, 0x3FC00000u, 0x3D45767Au},
    {0x40322816u, 0x3FC00000u, 0x40949F35u},
    {0x40A523D9u, 0x3FC00000u, 0x413B930Bu},
    {0x40474C26u, 0x3FC00000u, 0x40AFD898u},
    // y = 1.5: x anywhere in the positive range, torch differs from the correctly rounded power
    {0x1431C280u, 0x3FC00000u, 0x00094202u},
    {0x63570011u, 0x3FC00000u, 0x75450864u},
    {0x328F3A57u, 0x3FC00000u, 0x2C17821Fu},
    {0x689EEBF9u, 0x3FC00000u, 0x7D31148Bu},
    // y = 1.5: x in [0, 8), ordinary values
    {0x40C50256u, 0x3FC00000u, 0x417469C3u},
    {0x40A337C3u, 0x3FC00000u, 0x41384F16u},
    {0x3FB8E188u, 0x3FC00000u, 0x3FDE31CDu},
    {0x40F7AEC0u, 0x3FC00000u, 0x41AC44FCu},
    {0x401E7422u, 0x3FC00000u, 0x407952D6u},
    {0x4002771Eu, 0x3FC00000u, 0x403A462Du},
    // y = 7.0: x in [0, 8), torch differs from the correctly rounded power
    {0x4093C5DEu, 0x40E00000u, 0x472EEF19u},
    {0x400F780Eu, 0x40E00000u, 0x438E3CF3u},
    {0x40A392AAu, 0x40E00000u, 0x47B2192Bu},
    {0x40F385F3u, 0x40E00000u, 0x49B471BBu},
    {0x3FF3A210u, 0x40E00000u, 0x42B503BFu},
    {0x3FA1E9B0u, 0x40E00000u, 0x40A5D321u},
    {0x40C3F263u, 0x40E00000u, 0x489D9C88u},
    {0x3F863348u, 0x40E00000u, 0x3FB23E79u},
    // y = 7.0: x anywhere in the positive range, torch differs from the correctly rounded power
    {0x3678FEC2u, 0x40E00000u, 0x00696800u},
    {0x35EF8829u, 0x40E00000u, 0x0000A0BCu},
    {0x442E71D9u, 0x40E00000u, 0x608BB805u},
    {0x469086CAu, 0x40E00000u, 0x7115BDE5u},
    // y = 7.0: x in [0, 8), ordinary values
    {0x4096D368u, 0x40E00000u, 0x4749DAE9u},
    {0x409473BCu, 0x40E00000u, 0x4734A3E3u},
    {0x40CB1255u, 0x40E00000u, 0x48CA60EFu},
    {0x40DF61A8u, 0x40E00000u, 0x494534BFu},
    {0x408CB1FCu, 0x40E00000u, 0x46F823C4u},
    {0x40BCC077u, 0x40E00000u, 0x48729939u},
    // y = -0.3: subnormal, tiny, huge and near-1 x, powers of two
    {0x00000001u, 0xBE99999Au, 0x55CFEFD7u},
    {0x00000003u, 0xBE99999Au, 0x55958D91u},
    {0x000002BDu, 0xBE99999Au, 0x5468F927u},
    {0x00400000u, 0xBE99999Au, 0x52892FE9u},
    {0x007FFFFFu, 0xBE99999Au, 0x525EDC77u},
    {0x00800000u, 0xBE99999Au, 0x525EDC76u},
    {0x1F800000u, 0xBE99999Au, 0x49130891u},
    {0x3F400000u, 0xBE99999Au, 0x3F8B89A7u},
    {0x3FC00000u, 0xBE99999Au, 0x3F62ADFFu},
    {0x3FBFFFFFu, 0xBE99999Au, 0x3F62AE00u},
    {0x3F7FFFFFu, 0xBE99999Au, 0x3F800000u},
    {0x3F800001u, 0xBE99999Au, 0x3F7FFFFFu},
    {0x49800000u, 0xBE99999Au, 0x3C7FFFFDu},
    {0x7F7FFFFFu, 0xBE99999Au, 0x2C4202F3u},
    {0x7F000000u, 0xBE99999Au, 0x2C6EDB30u},
    {0x3F000000u, 0xBE99999Au, 0x3F9D9624u},
    {0x40800000u, 0xBE99999Au, 0x3F28E5A2u},
    // y = -0.30078125: subnormal, tiny, huge and near-1 x, powers of two
    {0x00000001u, 0xBE9A0000u, 0x55E168E7u},
    {0x00000003u, 0xBE9A0000u, 0x55A1FB17u},
    {0x000002BDu, 0xBE9A0000u, 0x547B42ACu},
    {0x00400000u, 0xBE9A0000u, 0x5292F42Cu},
    {0x007FFFFFu, 0xBE9A0000u, 0x526E9910u},
    {0x00800000u, 0xBE9A0000u, 0x526E9910u},
    {0x1F800000u, 0xBE9A0000u, 0x491837F0u},
    {0x3F400000u, 0xBE9A0000u, 0x3F8B91AFu},
    {0x3FC00000u, 0xBE9A0000u, 0x3F629B9Eu},
    {0x3FBFFFFFu, 0xBE9A0000u, 0x3F629B9Fu},
    {0x3F7FFFFFu, 0xBE9A0000u, 0x3F800000u},
    {0x3F800001u, 0xBE9A0000u, 0x3F7FFFFFu},
    {0x49800000u, 0xBE9A0000u, 0x3C7D3E0Cu},
    {0x7F7FFFFFu, 0xBE9A0000u, 0x2C3504F3u},
    {0x7F000000u, 0xBE9A0000u, 0x2C5EFB4Eu},
    {0x3F000000u, 0xBE9A0000u, 0x3F9DABFEu},
    {0x40800000u, 0xBE9A0000u, 0x3F28B6D5u},
    // y = -0.30004883: subnormal, tiny, huge and near-1 x, powers of two
    {0x00000001u, 0xBE99A000u, 0x55D0FCE5u},
    {0x00000003u, 0xBE99A000u, 0x55964D04u},
    {0x000002BDu, 0xBE99A000u, 0x546A136Eu},
    {0x00400000u, 0xBE99A000u, 0x5289C728u},
    {0x007FFFFFu, 0xBE99A000u, 0x525FD039u},
    {0x00800000u, 0xBE99A000u, 0x525FD038u},
    {0x1F800000u, 0xBE99A000u, 0x49135A2Bu},
    {0x3F400000u, 0xBE99A000u, 0x3F8B8A28u},
    {0x3FC00000u, 0xBE99A000u, 0x3F62ACD9u},
    {0x3FBFFFFFu, 0xBE99A000u, 0x3F62ACDAu},
    {0x3F7FFFFFu, 0xBE99A000u, 0x3F800000u},
    {0x3F800001u, 0xBE99A000u, 0x3F7FFFFFu},
    {0x49800000u, 0xBE99A000u, 0x3C7FD3A7u},
    {0x7F7FFFFFu, 0xBE99A000u, 0x2C412C4Du},
    {0x7F000000u, 0xBE99A000u, 0x2C6DD4FCu},
    {0x3F000000u, 0xBE99A000u, 0x3F9D9781u},
    {0x40800000u, 0xBE99A000u, 0x3F28E2B5u},
    // y = 2.5: subnormal, tiny, huge and near-1 x, powers of two
    {0x00000001u, 0x40200000u, 0x00000000u},
    {0x00000003u, 0x40200000u, 0x00000000u},
    {0x000002BDu, 0x40200000u, 0x00000000u},
    {0x00400000u, 0x40200000u, 0x00000000u},
    {0x007FFFFFu, 0x40200000u, 0x00000000u},
    {0x00800000u, 0x40200000u, 0x00000000u},
    {0x1F800000u, 0x40200000u, 0x00000000u},
    {0x3F400000u, 0x40200000u, 0x3EF96A52u},
    {0x3FC00000u, 0x40200000u, 0x40305CFFu},
    {0x3FBFFFFFu, 0x40200000u, 0x40305CFCu},
    {0x3F7FFFFFu, 0x40200000u, 0x3F7FFFFEu},
    {0x3F800001u, 0x40200000u, 0x3F800003u},
    {0x49800000u, 0x40200000u, 0x58800000u},
    {0x7F7FFFFFu, 0x40200000u, 0x7F800000u},
    {0x7F000000u, 0x40200000u, 0x7F800000u},
    {0x3F000000u, 0x40200000u, 0x3E3504F3u},
    {0x40800000u, 0x40200000u, 0x42000000u},
    // y = -1.7: subnormal, tiny, huge and near-1 x, powers of two
    {0x00000001u, 0xBFD9999Au, 0x7F800000u},
    {0x00000003u, 0xBFD9999Au, 0x7F800000u},
    {0x000002BDu, 0xBFD9999Au, 0x7F800000u},
    {0x00400000u, 0xBFD9999Au, 0x7F800000u},
    {0x007FFFFFu, 0xBFD9999Au, 0x7F800000u},
    {0x00800000u, 0xBFD9999Au, 0x7F800000u},
    {0x1F800000u, 0xBFD9999Au, 0x75DEDC86u},
    {0x3F400000u, 0xBFD9999Au, 0x3FD0BD75u},
    {0x3FC00000u, 0xBFD9999Au, 0x3F007E9Du},
    {0x3FBFFFFFu, 0xBFD9999Au, 0x3F007E9Eu},
    {0x3F7FFFFFu, 0xBFD9999Au, 0x3F800001u},
    {0x3F800001u, 0xBFD9999Au, 0x3F7FFFFDu},
    {0x49800000u, 0xBFD9999Au, 0x2E7FFFF5u},
    {0x7F7FFFFFu, 0xBFD9999Au, 0x00000000u},
    {0x7F000000u, 0xBFD9999Au, 0x00000000u},
    {0x3F000000u, 0xBFD9999Au, 0x404FEFC6u},
    {0x40800000u, 0xBFD9999Au, 0x3DC202FFu},
    // y = 100.0: subnormal, tiny, huge and near-1 x, powers of two
    {0x00000001u, 0x42C80000u, 0x00000000u},
    {0x00000003u, 0x42C80000u, 0x00000000u},
    {0x000002BDu, 0x42C80000u, 0x00000000u},
    {0x00400000u, 0x42C80000u, 0x00000000u},
    {0x007FFFFFu, 0x42C80000u, 0x00000000u},
    {0x00800000u, 0x42C80000u, 0x00000000u},
    {0x1F800000u, 0x42C80000u, 0x00000000u},
    {0x3F400000u, 0x42C80000u, 0x2AB48CA8u},
    {0x3FC00000u, 0x42C80000u, 0x5CB48CA8u},
    {0x3FBFFFFFu, 0x42C80000u, 0x5CB48C49u},
    {0x3F7FFFFFu, 0x42C80000u, 0x3F7FFF9Cu},
    {0x3F800001u, 0x42C80000u, 0x3F800064u},
    {0x49800000u, 0x42C80000u, 0x7F800000u},
    {0x7F7FFFFFu, 0x42C80000u, 0x7F800000u},
    {0x7F000000u, 0x42C80000u, 0x7F800000u},
    {0x3F000000u, 0x42C80000u, 0x0D800000u},
    {0x40800000u, 0x42C80000u, 0x7F800000u},
    // y = -100.0: subnormal, tiny, huge and near-1 x, powers of two
    {0x00000001u, 0xC2C80000u, 0x7F800000u},
    {0x00000003u, 0xC2C80000u, 0x7F800000u},
    {0x000002BDu, 0xC2C80000u, 0x7F800000u},
    {0x00400000u, 0xC2C80000u, 0x7F800000u},
    {0x007FFFFFu, 0xC2C80000u, 0x7F800000u},
    {0x00800000u, 0xC2C80000u, 0x7F800000u},
    {0x1F800000u, 0xC2C80000u, 0x7F800000u},
    {0x3F400000u, 0xC2C80000u, 0x54357D8Fu},
    {0x3FC00000u, 0xC2C80000u, 0x22357D8Fu},
    {0x3FBFFFFFu, 0xC2C80000u, 0x22357DEEu},
    {0x3F7FFFFFu, 0xC2C80000u, 0x3F800032u},
    {0x3F800001u, 0xC2C80000u, 0x3F7FFF38u},
    {0x49800000u, 0xC2C80000u, 0x00000000u},
    {0x7F7FFFFFu, 0xC2C80000u, 0x00000000u},
    {0x7F000000u, 0xC2C80000u, 0x00000000u},
    {0x3F000000u, 0xC2C80000u, 0x71800000u},
    {0x40800000u, 0xC2C80000u, 0x00000000u},
    // y = -0.3: zeros, infinities, NaNs, negative x
    {0x00000000u, 0xBE99999Au, 0x7F800000u},
    {0x80000000u, 0xBE99999Au, 0x7F800000u},
    {0x7F800000u, 0xBE99999Au, 0x00000000u},
    {0xFF800000u, 0xBE99999Au, 0x00000000u},
    {0x7FC00000u, 0xBE99999Au, 0xFFFFFFFFu},
    {0x3F800000u, 0xBE99999Au, 0x3F800000u},
    {0xBF800000u, 0xBE99999Au, 0x7FC00000u},
    {0xC0000000u, 0xBE99999Au, 0x7FC00000u},
    {0xBF000000u, 0xBE99999Au, 0x7FC00000u},
    {0x40000000u, 0xBE99999Au, 0x3F4FEFC6u},
    {0x3E99999Au, 0xBE99999Au, 0x3FB7AF59u},
    {0x00000001u, 0xBE99999Au, 0x55CFEFD7u},
    // y = 2.5: zeros, infinities, NaNs, negative x
    {0x00000000u, 0x40200000u, 0x00000000u},
    {0x80000000u, 0x40200000u, 0x00000000u},
    {0x7F800000u, 0x40200000u, 0x7F800000u},
    {0xFF800000u, 0x40200000u, 0x7F800000u},
    {0x7FC00000u, 0x40200000u, 0xFFFFFFFFu},
    {0x3F800000u, 0x40200000u, 0x3F800000u},
    {0xBF800000u, 0x40200000u, 0x7FC00000u},
    {0xC0000000u, 0x40200000u, 0x7FC00000u},
    {0xBF000000u, 0x40200000u, 0x7FC00000u},
    {0x40000000u, 0x40200000u, 0x40B504F3u},
    {0x3E99999Au, 0x40200000u, 0x3D49E997u},
    {0x00000001u, 0x40200000u, 0x00000000u},
    // y = 3.0: zeros, infinities, NaNs, negative x
    {0x00000000u, 0x40400000u, 0x00000000u},
    {0x80000000u, 0x40400000u, 0x80000000u},
    {0x7F800000u, 0x40400000u, 0x7F800000u},
    {0xFF800000u, 0x40400000u, 0xFF800000u},
    {0x7FC00000u, 0x40400000u, 0x7FC00000u},
    {0x3F800000u, 0x40400000u, 0x3F800000u},
    {0xBF800000u, 0x40400000u, 0xBF800000u},
    {0xC0000000u, 0x40400000u, 0xC1000000u},
    {0xBF000000u, 0x40400000u, 0xBE000000u},
    {0x40000000u, 0x40400000u, 0x41000000u},
    {0x3E99999Au, 0x40400000u, 0x3CDD2F1Cu},
    {0x00000001u, 0x40400000u, 0x00000000u},
    // y = -3.0: zeros, infinities, NaNs, negative x
    {0x00000000u, 0xC0400000u, 0x7F800000u},
    {0x80000000u, 0xC0400000u, 0xFF800000u},
    {0x7F800000u, 0xC0400000u, 0x00000000u},
    {0xFF800000u, 0xC0400000u, 0x80000000u},
    {0x7FC00000u, 0xC0400000u, 0xFFFFFFFFu},
    {0x3F800000u, 0xC0400000u, 0x3F800000u},
    {0xBF800000u, 0xC0400000u, 0xBF800000u},
    {0xC0000000u, 0xC0400000u, 0xBE000000u},
    {0xBF000000u, 0xC0400000u, 0xC1000000u},
    {0x40000000u, 0xC0400000u, 0x3E000000u},
    {0x3E99999Au, 0xC0400000u, 0x421425ECu},
    {0x00000001u, 0xC0400000u, 0x7F800000u},
    // y = 2.0: zeros, infinities, NaNs, negative x
    {0x00000000u, 0x40000000u, 0x00000000u},
    {0x80000000u, 0x40000000u, 0x00000000u},
    {0x7F800000u, 0x40000000u, 0x7F800000u},
    {0xFF800000u, 0x40000000u, 0x7F800000u},
    {0x7FC00000u, 0x40000000u, 0x7FC00000u},
    {0x3F800000u, 0x40000000u, 0x3F800000u},
    {0xBF800000u, 0x40000000u, 0x3F800000u},
    {0xC0000000u, 0x40000000u, 0x40800000u},
    {0xBF000000u, 0x40000000u, 0x3E800000u},
    {0x40000000u, 0x40000000u, 0x40800000u},
    {0x3E99999Au, 0x40000000u, 0x3DB851ECu},
    {0x00000001u, 0x40000000u, 0x00000000u},
    // y = -2.0: zeros, infinities, NaNs, negative x
    {0x00000000u, 0xC0000000u, 0x7F800000u},
    {0x80000000u, 0xC0000000u, 0x7F800000u},
    {0x7F800000u, 0xC0000000u, 0x00000000u},
    {0xFF800000u, 0xC0000000u, 0x00000000u},
    {0x7FC00000u, 0xC0000000u, 0x7FC00000u},
    {0x3F800000u, 0xC0000000u, 0x3F800000u},
    {0xBF800000u, 0xC0000000u, 0x3F800000u},
    {0xC0000000u, 0xC0000000u, 0x3E800000u},
    {0xBF000000u, 0xC0000000u, 0x40800000u},
    {0x40000000u, 0xC0000000u, 0x3E800000u},
    {0x3E99999Au, 0xC0000000u, 0x4131C71Cu},
    {0x00000001u, 0xC0000000u, 0x7F800000u},
    // y = -1.0: zeros, infinities, NaNs, negative x
    {0x00000000u, 0xBF800000u, 0x7F800000u},
    {0x80000000u, 0xBF800000u, 0xFF800000u},
    {0x7F800000u, 0xBF800000u, 0x00000000u},
    {0xFF800000u, 0xBF800000u, 0x80000000u},
    {0x7FC00000u, 0xBF800000u, 0x7FC00000u},
    {0x3F800000u, 0xBF800000u, 0x3F800000u},
    {0xBF800000u, 0xBF800000u, 0xBF800000u},
    {0xC0000000u, 0xBF800000u, 0xBF000000u},
    {0xBF000000u, 0xBF800000u, 0xC0000000u},
    {0x40000000u, 0xBF800000u, 0x3F000000u},
    {0x3E99999Au, 0xBF800000u, 0x40555555u},
    {0x00000001u, 0xBF800000u, 0x7F800000u},
    // y = -0.5: zeros, infinities, NaNs, negative x
    {0x00000000u, 0xBF000000u, 0x7F800000u},
    {0x80000000u, 0xBF000000u, 0xFF800000u},
    {0x7F800000u, 0xBF000000u, 0x00000000u},
    {0xFF800000u, 0xBF000000u, 0xFFC00000u},
    {0x7FC00000u, 0xBF000000u, 0x7FC00000u},
    {0x3F800000u, 0xBF000000u, 0x3F800000u},
    {0xBF800000u, 0xBF000000u, 0xFFC00000u},
    {0xC0000000u, 0xBF000000u, 0xFFC00000u},
    {0xBF000000u, 0xBF000000u, 0xFFC00000u},
    {0x40000000u, 0xBF000000u, 0x3F3504F3u},
    {0x3E99999Au, 0xBF000000u, 0x3FE9B1E8u},
    {0x00000001u, 0xBF000000u, 0x64B504F3u},
    // y = 0.0: zeros, infinities, NaNs, negative x
    {0x00000000u, 0x00000000u, 0x3F800000u},
    {0x80000000u, 0x00000000u, 0x3F800000u},
    {0x7F800000u, 0x00000000u, 0x3F800000u},
    {0xFF800000u, 0x00000000u, 0x3F800000u},
    {0x7FC00000u, 0x00000000u, 0x3F800000u},
    {0x3F800000u, 0x00000000u, 0x3F800000u},
    {0xBF800000u, 0x00000000u, 0x3F800000u},
    {0xC0000000u, 0x00000000u, 0x3F800000u},
    {0xBF000000u, 0x00000000u, 0x3F800000u},
    {0x40000000u, 0x00000000u, 0x3F800000u},
    {0x3E99999Au, 0x00000000u, 0x3F800000u},
    {0x00000001u, 0x00000000u, 0x3F800000u},
    // y = 1.0: zeros, infinities, NaNs, negative x
    {0x00000000u, 0x3F800000u, 0x00000000u},
    {0x80000000u, 0x3F800000u, 0x80000000u},
    {0x7F800000u, 0x3F800000u, 0x7F800000u},
    {0xFF800000u, 0x3F800000u, 0xFF800000u},
    {0x7FC00000u, 0x3F800000u, 0x7FC00000u},
    {0x3F800000u, 0x3F800000u, 0x3F800000u},
    {0xBF800000u, 0x3F800000u, 0xBF800000u},
    {0xC0000000u, 0x3F800000u, 0xC0000000u},
    {0xBF000000u, 0x3F800000u, 0xBF000000u},
    {0x40000000u, 0x3F800000u, 0x40000000u},
    {0x3E99999Au, 0x3F800000u, 0x3E99999Au},
    {0x00000001u, 0x3F800000u, 0x00000001u},
    // y = inf: zeros, infinities, NaNs, negative x
    {0x00000000u, 0x7F800000u, 0x00000000u},
    {0x80000000u, 0x7F800000u, 0x00000000u},
    {0x7F800000u, 0x7F800000u, 0x7F800000u},
    {0xFF800000u, 0x7F800000u, 0x7F800000u},
    {0x7FC00000u, 0x7F800000u, 0xFFFFFFFFu},
    {0x3F800000u, 0x7F800000u, 0x3F800000u},
    {0xBF800000u, 0x7F800000u, 0x3F800000u},
    {0xC0000000u, 0x7F800000u, 0x7F800000u},
    {0xBF000000u, 0x7F800000u, 0x00000000u},
    {0x40000000u, 0x7F800000u, 0x7F800000u},
    {0x3E99999Au, 0x7F800000u, 0x00000000u},
    {0x00000001u, 0x7F800000u, 0x00000000u},
    // y = -inf: zeros, infinities, NaNs, negative x
    {0x00000000u, 0xFF800000u, 0x7F800000u},
    {0x80000000u, 0xFF800000u, 0x7F800000u},
    {0x7F800000u, 0xFF800000u, 0x00000000u},
    {0xFF800000u, 0xFF800000u, 0x00000000u},
    {0x7FC00000u, 0xFF800000u, 0xFFFFFFFFu},
    {0x3F800000u, 0xFF800000u, 0x3F800000u},
    {0xBF800000u, 0xFF800000u, 0x3F800000u},
    {0xC0000000u, 0xFF800000u, 0x00000000u},
    {0xBF000000u, 0xFF800000u, 0x7F800000u},
    {0x40000000u, 0xFF800000u, 0x00000000u},
    {0x3E99999Au, 0xFF800000u, 0x7F800000u},
    {0x00000001u, 0xFF800000u, 0x7F800000u},
    // y = nan: zeros, infinities, NaNs, negative x
    {0x00000000u, 0x7FC00000u, 0xFFFFFFFFu},
    {0x80000000u, 0x7FC00000u, 0xFFFFFFFFu},
    {0x7F800000u, 0x7FC00000u, 0xFFFFFFFFu},
    {0xFF800000u, 0x7FC00000u, 0xFFFFFFFFu},
    {0x7FC00000u, 0x7FC00000u, 0xFFFFFFFFu},
    {0x3F800000u, 0x7FC00000u, 0x3F800000u},
    {0xBF800000u, 0x7FC00000u, 0xFFFFFFFFu},
    {0xC0000000u, 0x7FC00000u, 0xFFFFFFFFu},
    {0xBF000000u, 0x7FC00000u, 0xFFFFFFFFu},
    {0x40000000u, 0x7FC00000u, 0xFFFFFFFFu},
    {0x3E99999Au, 0x7FC00000u, 0xFFFFFFFFu},
    {0x00000001u, 0x7FC00000u, 0xFFFFFFFFu},
    // y = 1e+30: zeros, infinities, NaNs, negative x
    {0x00000000u, 0x7149F2CAu, 0x00000000u},
    {0x80000000u, 0x7149F2CAu, 0x00000000u},
    {0x7F800000u, 0x7149F2CAu, 0x7F800000u},
    {0xFF800000u, 0x7149F2CAu, 0x7F800000u},
    {0x7FC00000u, 0x7149F2CAu, 0xFFFFFFFFu},
    {0x3F800000u, 0x7149F2CAu, 0x3F800000u},
    {0xBF800000u, 0x7149F2CAu, 0x3F800000u},
    {0xC0000000u, 0x7149F2CAu, 0x7F800000u},
    {0xBF000000u, 0x7149F2CAu, 0x00000000u},
    {0x40000000u, 0x7149F2CAu, 0x7F800000u},
    {0x3E99999Au, 0x7149F2CAu, 0x00000000u},
    {0x00000001u, 0x7149F2CAu, 0x00000000u},
    // y = 3.0: exponents torch computes without SLEEF
    {0x4095E7EAu, 0x40400000u, 0x42CD9B35u},
    {0x404E3B80u, 0x40400000u, 0x4205D76Fu},
    {0x3EF78960u, 0x40400000u, 0x3DE770A5u},
    {0x40B2CF8Bu, 0x40400000u, 0x432E7957u},
    // y = 2.0: exponents torch computes without SLEEF
    {0x40EB3787u, 0x40000000u, 0x42581EFEu},
    {0x407A0062u, 0x40000000u, 0x417424BFu},
    {0x3F2B7358u, 0x40000000u, 0x3EE5A697u},
    {0x40C4987Bu, 0x40000000u, 0x4216F9D7u},
    // y = -2.0: exponents torch computes without SLEEF
    {0x40969AECu, 0xC0000000u, 0x3D38EB1Du},
    {0x3E293C40u, 0xC0000000u, 0x42127232u},
    {0x40622FCAu, 0xC0000000u, 0x3DA3F77Eu},
    {0x4095ACC1u, 0xC0000000u, 0x3D3B3972u},
    // y = -1.0: exponents torch computes without SLEEF
    {0x40877B2Du, 0xBF800000u, 0x3E71DD28u},
    {0x40DE16D1u, 0xBF800000u, 0x3E138B5Cu},
    {0x40C9C3EFu, 0xBF800000u, 0x3E22680Eu},
    {0x406ABFB8u, 0xBF800000u, 0x3E8B9663u},
    // y = -0.5: exponents torch computes without SLEEF
    {0x408962F2u, 0xBF000000u, 0x3EF719A0u},
    {0x3FEAB56Cu, 0xBF000000u, 0x3F3D0D36u},
    {0x40E92688u, 0xBF000000u, 0x3EBDAEAAu},
    {0x40B078ABu, 0xBF000000u, 0x3EDA0699u},
};

bool is_short_cut(float y) {
  return y == 0.0f || y == 1.0f || y == 0.5f || y == -0.5f || y == -1.0f || y == 2.0f || y == 3.0f || y == -2.0f;
}

TEST(TorchPow, MatchesRecordedTorchResultsBitForBit) {
  int mismatches = 0;
  for (const pow_case& c : kTorchCases) {
    const float got = torch_powf(bits_to_float(c.x), bits_to_float(c.y));
    if (float_to_bits(got) != c.expected) {
      ++mismatches;
      ADD_FAILURE() << std::hexfloat << "torch_powf(" << bits_to_float(c.x) << ", " << bits_to_float(c.y)
                    << ") = " << got << " (0x" << std::hex << float_to_bits(got) << "), torch gives 0x" << c.expected;
    }
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_GE(sizeof(kTorchCases) / sizeof(kTorchCases[0]), 300u);
}

TEST(TorchPow, SleefKernelIsWhatTorchUsesForOtherExponents) {
  int checked = 0;
  for (const pow_case& c : kTorchCases) {
    const float y = bits_to_float(c.y);
    if (is_short_cut(y)) continue;
    ++checked;
    EXPECT_EQ(float_to_bits(sleef_powf_u10(bits_to_float(c.x), y)), c.expected)
        << std::hex << "x=0x" << c.x << " y=0x" << c.y;
  }
  EXPECT_GT(checked, 300);
}

TEST(TorchPow, SpecialCases) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float y = -0.3f;
  EXPECT_EQ(torch_powf(0.0f, y), inf);
  EXPECT_EQ(torch_powf(0.0f, 0.3f), 0.0f);
  EXPECT_EQ(torch_powf(inf, y), 0.0f);
  EXPECT_EQ(torch_powf(inf, 0.3f), inf);
  EXPECT_EQ(torch_powf(1.0f, y), 1.0f);
  EXPECT_EQ(sleef_powf_u10(1.0f, nan), 1.0f);
  EXPECT_EQ(sleef_powf_u10(nan, 0.0f), 1.0f);
  EXPECT_EQ(torch_powf(2.0f, 0.0f), 1.0f);
  EXPECT_EQ(torch_powf(0.25f, 1.0f), 0.25f);
  EXPECT_TRUE(std::isnan(torch_powf(nan, y)));
  EXPECT_TRUE(std::isnan(torch_powf(2.0f, nan)));
  EXPECT_TRUE(std::isnan(torch_powf(-2.0f, y)));
  EXPECT_EQ(float_to_bits(sleef_powf_u10(-2.0f, y)), 0x7FC00000u);  // the default NaN
  EXPECT_EQ(float_to_bits(sleef_powf_u10(nan, y)), 0xFFFFFFFFu);    // a NaN input: all ones
  EXPECT_EQ(sleef_powf_u10(-2.0f, 5.0f), -32.0f);
  EXPECT_EQ(sleef_powf_u10(-2.0f, 4.0f), 16.0f);
  EXPECT_EQ(sleef_powf_u10(0.5f, inf), 0.0f);
  EXPECT_EQ(sleef_powf_u10(0.5f, -inf), inf);
  EXPECT_EQ(sleef_powf_u10(-1.0f, inf), 1.0f);
  EXPECT_EQ(sleef_powf_u10(3.0f, 1000.0f), inf);
  EXPECT_EQ(sleef_powf_u10(3.0f, -1000.0f), 0.0f);
  EXPECT_EQ(float_to_bits(sleef_powf_u10(-0.0f, 3.0f)), 0x80000000u);
  EXPECT_EQ(sleef_powf_u10(-0.0f, -3.0f), -inf);
  // Subnormal bases take the pre-scaled path of the logarithm.
  EXPECT_EQ(sleef_powf_u10(0x1p-148f, -0.5f), 0x1p74f);
  EXPECT_EQ(sleef_powf_u10(0x1p-140f, 0.25f), 0x1p-35f);
}

// Torch's short-cut exponents, computed the way its kernels do.
TEST(TorchPow, ShortCutExponents) {
  for (float x : {0.1f, 1.7f, 3.3f, 1e-20f, 123.456f}) {
    EXPECT_EQ(torch_powf(x, 2.0f), x * x);
    EXPECT_EQ(torch_powf(x, 3.0f), (x * x) * x);
    EXPECT_EQ(torch_powf(x, -1.0f), 1.0f / x);
    EXPECT_EQ(torch_powf(x, -2.0f), 1.0f / (x * x));
    EXPECT_EQ(torch_powf(x, 0.5f), std::sqrt(x));
    EXPECT_EQ(torch_powf(x, -0.5f), 1.0f / std::sqrt(x));
  }
}

// |torch_powf - the correctly rounded power| <= 1 ulp, and it is not simply the correctly rounded
// power: a small fraction of results is 1 ulp off, as in SLEEF.
TEST(TorchPow, WithinOneUlpOfCorrectlyRounded) {
  constexpr float kExponents[] = {-0.3f, -0.30078125f, -0.300048828125f, 2.5f, -1.7f, 0.7f, 0.1f, -10.5f, 7.0f, 1.25f,
                                  0.01f, -4.75f};
  std::uint64_t state = 0x9E3779B97F4A7C15u;
  const auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return static_cast<std::uint32_t>(state >> 32);
  };
  long long tested = 0;
  long long off_by_one = 0;
  long long too_far = 0;
  for (int i = 0; i < 300000; ++i) {
    const float y = kExponents[static_cast<std::size_t>(i) % std::size(kExponents)];
    float x = 0;
    switch (i % 3) {
      case 0:  // uniform in [0, 8)
        x = static_cast<float>(next() >> 8) * 0x1p-21f;
        break;
      case 1:  // any positive finite float, subnormals included
        x = bits_to_float(next() % 0x7F800000u);
        break;
      default:  // within 2^16 ulps of 1
        x = bits_to_float(0x3F800000u - 0x10000u + (next() & 0x1FFFFu));
        break;
    }
    const float got = torch_powf(x, y);
    const float exact = static_cast<float>(std::pow(static_cast<double>(x), static_cast<double>(y)));
    const std::uint32_t a = float_to_bits(got);
    const std::uint32_t b = float_to_bits(exact);
    const std::uint32_t dist = a > b ? a - b : b - a;  // both >= 0: bit order is value order
    ++tested;
    if (dist == 1) ++off_by_one;
    if (dist > 1) {
      ++too_far;
      if (too_far < 10) {
        ADD_FAILURE() << std::hexfloat << "pow(" << x << ", " << y << "): " << got << " vs " << exact;
      }
    }
  }
  EXPECT_EQ(too_far, 0);
  EXPECT_GT(off_by_one, tested / 1000);  // SLEEF's u10 is ~1-2 % off by one ulp
  EXPECT_LT(off_by_one, tested / 10);
}

}  // namespace
