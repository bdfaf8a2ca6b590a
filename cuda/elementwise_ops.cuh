// The one table of elementwise ops: each line names an op of cuda/elementwise.cu, and its kernel
// code is its position among the lines of its kind (from 0). cuda/elementwise.cu includes this
// file to build its code enums; build.rs reads it to generate the Rust enums `UnaryCode` and
// `BinaryCode` (src/backend/cuda/ops.rs), so the codes are written down nowhere else. The names
// are the Rust variant names. Add an op by adding a line here and its case in elementwise.cu.
// Include only with BS_UNARY and BS_BINARY defined.

BS_UNARY(Neg)
BS_UNARY(Exp)
BS_UNARY(Log)
BS_UNARY(Sqrt)
BS_UNARY(Rsqrt)
BS_UNARY(Recip)
BS_UNARY(Sqr)
BS_UNARY(Sin)
BS_UNARY(Cos)
BS_UNARY(Abs)
BS_UNARY(Tanh)
BS_UNARY(Sigmoid)
BS_UNARY(Erf)
BS_UNARY(Relu)
BS_UNARY(Silu)
BS_UNARY(Gelu)
BS_UNARY(Softplus)
BS_UNARY(Powf)
BS_UNARY(LeakyRelu)
BS_UNARY(Clamp)
BS_UNARY(Affine)
BS_UNARY(StepPos)
BS_UNARY(Sign)
BS_UNARY(InRange)
BS_UNARY(Ge)
BS_UNARY(LeakyDeriv)
BS_UNARY(GeluDeriv)

BS_BINARY(Add)
BS_BINARY(Sub)
BS_BINARY(Mul)
BS_BINARY(Div)
BS_BINARY(Max)
BS_BINARY(Min)
BS_BINARY(GeMask)
