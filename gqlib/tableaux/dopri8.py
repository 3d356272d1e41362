"""Prince-Dormand RK8(7)13M (torchdiffeq's ``dopri8``) with torchdiffeq's quartic dense output.

Prince & Dormand publish rational *approximations* of the coefficients (to about 18 digits; the nodes
c_9 and c_11 among them): with them the row sums and the order conditions hold to about 1e-17, not
exactly, so the tableau is built from their float64 values and checked to 1e-13. The published
rationals are kept below as data.

Shape: FSAL, like torchdiffeq's tableau: the 13 stages of the method plus ``f(t + h, y1)`` as a 14th
stage with ``a`` row ``b``. That stage is the interpolant's ``f1`` and the next step's first stage, so an
accepted step costs 13 evaluations, exactly as with torchdiffeq; the error estimate does not use it.

Dense output: torchdiffeq fits the quartic through ``y0, y1, h f0, h f1`` and a midpoint value
``y0 + h sum_i mid_i k_i`` (torchdiffeq's ``C_mid``: degree-6 polynomials in a variable ``h`` evaluated
at 1/2; at other arguments they are not a continuous extension, not even ``sum = theta``, so only these
14 numbers matter). The midpoint value is 5th-order accurate (the order conditions at theta = 1/2 hold
up to order 5 and fail at 6), so the quartic has local order 4 (``dense_order = 4``), limited by its
degree: its weights satisfy the order conditions up to order 4 at every theta and fail at order 5.
``P`` is that quartic written over the stages (see ``_dense.quartic_through_midpoint``).
"""
from fractions import Fraction as F

from ._dense import quartic_through_midpoint, to_float
from ._tableau import ButcherTableau

_c = (F(0), F(1, 18), F(1, 12), F(1, 8), F(5, 16), F(3, 8), F(59, 400), F(93, 200),
      F(5490023248, 9719169821), F(13, 20), F(1201146811, 1299019798), F(1), F(1))
_a = (
    (),
    (F(1, 18),),
    (F(1, 48), F(1, 16)),
    (F(1, 32), F(0), F(3, 32)),
    (F(5, 16), F(0), F(-75, 64), F(75, 64)),
    (F(3, 80), F(0), F(0), F(3, 16), F(3, 20)),
    (F(29443841, 614563906), F(0), F(0), F(77736538, 692538347), F(-28693883, 1125000000),
     F(23124283, 1800000000)),
    (F(16016141, 946692911), F(0), F(0), F(61564180, 158732637), F(22789713, 633445777),
     F(545815736, 2771057229), F(-180193667, 1043307555)),
    (F(39632708, 573591083), F(0), F(0), F(-433636366, 683701615), F(-421739975, 2616292301),
     F(100302831, 723423059), F(790204164, 839813087), F(800635310, 3783071287)),
    (F(246121993, 1340847787), F(0), F(0), F(-37695042795, 15268766246), F(-309121744, 1061227803),
     F(-12992083, 490766935), F(6005943493, 2108947869), F(393006217, 1396673457),
     F(123872331, 1001029789)),
    (F(-1028468189, 846180014), F(0), F(0), F(8478235783, 508512852), F(1311729495, 1432422823),
     F(-10304129995, 1701304382), F(-48777925059, 3047939560), F(15336726248, 1032824649),
     F(-45442868181, 3398467696), F(3065993473, 597172653)),
    (F(185892177, 718116043), F(0), F(0), F(-3185094517, 667107341), F(-477755414, 1098053517),
     F(-703635378, 230739211), F(5731566787, 1027545527), F(5232866602, 850066563),
     F(-4093664535, 808688257), F(3962137247, 1805957418), F(65686358, 487910083)),
    (F(403863854, 491063109), F(0), F(0), F(-5068492393, 434740067), F(-411421997, 543043805),
     F(652783627, 914296604), F(11173962825, 925320556), F(-13158990841, 6184727034),
     F(3936647629, 1978049680), F(-160528059, 685178525), F(248638103, 1413531060), F(0)),
)
_b = (F(14005451, 335480064), F(0), F(0), F(0), F(0), F(-59238493, 1068277825), F(181606767, 758867731),
      F(561292985, 797845732), F(-1041891430, 1371343529), F(760417239, 1151165299),
      F(118820643, 751138087), F(-528747749, 2220607170), F(1, 4))
_b_hat = (F(13451932, 455176623), F(0), F(0), F(0), F(0), F(-808719846, 976000145),
          F(1757004468, 5645159321), F(656045339, 265891186), F(-3867574721, 1518517206),
          F(465885868, 322736535), F(53011238, 667516719), F(2, 45), F(0))
# torchdiffeq's C_mid: its degree-6 polynomials in theta, evaluated at theta = 1/2 exactly from their
# 20-digit decimals and rounded once
_mid = (0.041031303607394015, 0.0, 0.0, 0.0, 0.0, 0.05100562801991344, 0.23889306774122,
        0.30968701439961027, -0.21723254717553503, 0.07833405679331924, -0.001861436971558026,
        0.007072844202678452, 0.006908473732005094, -0.013838404349047484)

_S = 14  # 13 stages + the FSAL stage


def _floats(xs) -> tuple:
    return tuple(float(x) for x in xs)


_bf = _floats(_b) + (0.0,)

TABLEAU = ButcherTableau(
    name="dopri8",
    c=_floats(_c) + (1.0,),
    a=tuple(_floats(row) for row in _a) + (_bf[:13],),
    b=_bf,
    b_err=_floats(x - y for x, y in zip(_b, _b_hat, strict=True)) + (0.0,),  # b - b_hat, stored directly
    order=8,
    error_order=7,
    dense=to_float(quartic_through_midpoint(_bf, _mid, last=_S - 1)),
    dense_order=4,
    provenance="Prince & Dormand (1981), High order embedded Runge-Kutta formulae, J. Comput. Appl. "
               "Math. 7(1), 67-75, RK8(7)13M; coefficients and midpoint weights as torchdiffeq's dopri8",
)
