"""The example problems' text and gold answers (written for R1V Tutor); used by ``tutor.examples``.

Each answer was worked out by hand; the working is in the comment above each problem so that a
reviewer can check it. Answers use the forms ``tutor.answers`` compares: option letters, numbers,
LaTeX; a list for several blanks or sub-questions, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProblemSpec:
    """One problem: ``stem`` paragraphs are separated by "\\n"; ``options`` are drawn in a grid."""

    id: str
    subject: str
    problem_type: str
    lang: str
    stem: str
    answer: str | list[str]
    options: list[str] = field(default_factory=list)
    figure: str | None = None

    @property
    def text(self) -> str:
        """The text shown in the image (stem, then one option per line)."""
        return "\n".join([self.stem, *self.options])


PROBLEMS: list[ProblemSpec] = [
    # x^2-4x+3<0 <=> 1<x<3, so A=(1,3); A ∩ (2,5) = (2,3).
    ProblemSpec(
        id="math-zh-set-intersection",
        subject="math",
        problem_type="single_choice",
        lang="zh",
        stem="1. 已知集合 A = {x | x² − 4x + 3 < 0}，B = {x | 2 < x < 5}，则 A ∩ B =（　　）",
        options=["A. (1, 3)", "B. (2, 3)", "C. (3, 5)", "D. (1, 5)"],
        answer="B",
    ),
    # BC^2 = 25 + 9 - 2*5*3*cos120° = 34 + 15 = 49 -> 7; area = 1/2*5*3*sin120° = 15√3/4.
    ProblemSpec(
        id="math-en-triangle-cosine-rule",
        subject="math",
        problem_type="fill_blank",
        lang="en",
        stem="14. In triangle ABC (see the figure), AB = 5, AC = 3 and ∠BAC = 120°. "
        "Then BC = ________, and the area of triangle ABC is ________.",
        answer=["7", "\\frac{15\\sqrt{3}}{4}"],
        figure="triangle",
    ),
    # a1+d=3, a1+4d=9 -> d=2, a1=1, a_n=2n-1. b_n=1/((2n-1)(2n+1)) = 1/2(1/(2n-1)-1/(2n+1)),
    # T_n = 1/2(1-1/(2n+1)) = n/(2n+1)  (n=1: 1/3 = b_1).
    ProblemSpec(
        id="math-zh-arithmetic-sequence",
        subject="math",
        problem_type="free_response",
        lang="zh",
        stem="17.（本小题满分 10 分）已知等差数列 {aₙ} 满足 a₂ = 3，a₅ = 9。\n"
        "(1) 求数列 {aₙ} 的通项公式；\n"
        "(2) 设 bₙ = 1 / (aₙ · aₙ₊₁)，求数列 {bₙ} 的前 n 项和 Tₙ。",
        answer=["a_n=2n-1", "T_n=\\frac{n}{2n+1}"],
    ),
    # f(-x)=-f(x): odd. f'(x)=3x^2-3: + on (-inf,-1), - on (-1,1), + on (1,inf): local max at -1,
    # decreasing on (0,1) so C is false; on [-2,2]: f(-1)=2, f(2)=2, f(1)=f(-2)=-2, max 2.
    ProblemSpec(
        id="math-en-cubic-graph",
        subject="math",
        problem_type="multiple_choice",
        lang="en",
        stem="10. Let f(x) = x³ − 3x; part of its graph is shown below. Which of the following "
        "statements are correct? (More than one option may be correct.)",
        options=[
            "A. f(x) is an odd function",
            "B. f(x) has a local maximum at x = −1",
            "C. f(x) is increasing on (0, +∞)",
            "D. The maximum value of f(x) on [−2, 2] is 2",
        ],
        answer="ABD",
        figure="cubic",
    ),
    # f(x) = 2 sin(x + π/3), maximum 2.
    ProblemSpec(
        id="math-zh-trig-maximum",
        subject="math",
        problem_type="fill_blank",
        lang="zh",
        stem="13. 函数 f(x) = sin x + √3 cos x 的最大值为 ________。",
        answer="2",
    ),
    # I = E/(R1+R2+r) = 6/6 = 1 A; the voltmeter across R2 reads I*R2 = 3 V (5 V is the terminal voltage).
    ProblemSpec(
        id="physics-zh-circuit-voltmeter",
        subject="physics",
        problem_type="single_choice",
        lang="zh",
        stem="5. 如图所示的电路中，电源电动势 E = 6 V，内阻 r = 1 Ω，定值电阻 R₁ = 2 Ω，R₂ = 3 Ω，"
        "电压表为理想电表。闭合开关 S 后，电压表的示数为（　　）",
        options=["A. 1 V", "B. 2 V", "C. 3 V", "D. 5 V"],
        answer="C",
        figure="circuit",
    ),
    # h = 1/2 g t^2 -> t = 2 s; x = v0 t = 30 m; vy = g t = 20 m/s, v = sqrt(15^2+20^2) = 25 m/s.
    ProblemSpec(
        id="physics-en-projectile",
        subject="physics",
        problem_type="free_response",
        lang="en",
        stem="15. A ball is thrown horizontally from the top of a building 20 m high with an initial "
        "speed of 15 m/s. Ignore air resistance and take g = 10 m/s².\n"
        "(1) How long does the ball take to reach the ground (in s)?\n"
        "(2) How far from the foot of the building does it land (in m)?\n"
        "(3) What is the speed of the ball just before it hits the ground (in m/s)?",
        answer=["2", "30", "25"],
        figure="projectile",
    ),
    # v3 = a t = 6 m/s; third-second displacement = 1/2*2*3^2 - 1/2*2*2^2 = 9 - 4 = 5 m.
    ProblemSpec(
        id="physics-zh-uniform-acceleration",
        subject="physics",
        problem_type="fill_blank",
        lang="zh",
        stem="12. 一个物体从静止开始做匀加速直线运动，加速度大小为 2 m/s²。则物体在第 3 s 末的速度"
        "大小为 ________ m/s，在第 3 s 内的位移大小为 ________ m。",
        answer=["6", "5"],
    ),
    # NaOH: ionic bond Na+/OH-, covalent O-H bond. NaCl ionic only; HCl, H2O covalent only.
    ProblemSpec(
        id="chemistry-zh-bond-types",
        subject="chemistry",
        problem_type="single_choice",
        lang="zh",
        stem="3. 下列物质中，既含有离子键又含有共价键的是（　　）",
        options=["A. NaCl", "B. NaOH", "C. HCl", "D. H₂O"],
        answer="B",
    ),
    # Ethanol C2H5OH + 3 O2 -> 2 CO2 + 3 H2O: 3 mol O2 per mol.
    ProblemSpec(
        id="chemistry-en-ethanol-combustion",
        subject="chemistry",
        problem_type="fill_blank",
        lang="en",
        stem="16. The structural formula of an organic compound X is shown in the figure. When 1 mol "
        "of X burns completely in oxygen, ________ mol of O₂ is consumed.",
        answer="3",
        figure="ethanol",
    ),
    # Fe + H2SO4 = FeSO4 + H2: n(Fe) = 5.6/56 = 0.1 mol -> 0.1 mol H2 = 2.24 L at STP;
    # c(FeSO4) = 0.1 mol / 0.2 L = 0.5 mol/L.
    ProblemSpec(
        id="chemistry-zh-iron-acid",
        subject="chemistry",
        problem_type="free_response",
        lang="zh",
        stem="18. 将 5.6 g 铁粉加入足量的稀硫酸中，充分反应。（相对原子质量：Fe 56）\n"
        "(1) 生成的氢气在标准状况下的体积是多少升？\n"
        "(2) 若反应后溶液的体积为 200 mL，求溶液中 FeSO₄ 的物质的量浓度（单位：mol/L）。",
        answer=["2.24", "0.5"],
    ),
    # A: Na 0 -> +1, H +1 -> 0. C: Cl 0 -> -1, I -1 -> 0. B and D: no element changes oxidation state.
    ProblemSpec(
        id="chemistry-en-redox",
        subject="chemistry",
        problem_type="multiple_choice",
        lang="en",
        stem="9. Which of the following reactions are redox reactions? (More than one option may be correct.)",
        options=[
            "A. 2Na + 2H₂O = 2NaOH + H₂↑",
            "B. CaCO₃ = CaO + CO₂↑ (at high temperature)",
            "C. Cl₂ + 2KI = 2KCl + I₂",
            "D. NaOH + HCl = NaCl + H₂O",
        ],
        answer="AC",
    ),
    # Dd x Dd -> 1 DD : 2 Dd : 1 dd; tall = DD + Dd (3 parts), homozygous tall = DD (1 part): 1/3.
    ProblemSpec(
        id="biology-en-pea-genetics",
        subject="biology",
        problem_type="single_choice",
        lang="en",
        stem="4. In pea plants, tall stem (D) is dominant over short stem (d). Two plants of genotype "
        "Dd are crossed. Among the tall offspring, the proportion that is homozygous is",
        options=["A. 1/4", "B. 1/3", "C. 1/2", "D. 2/3"],
        answer="B",
    ),
    # Ribosomes make proteins; mitochondria are the main site of aerobic respiration. Prokaryotes
    # (and mature mammalian red cells) lack a nucleus; root cells have no chloroplasts.
    ProblemSpec(
        id="biology-zh-cell-structure",
        subject="biology",
        problem_type="multiple_choice",
        lang="zh",
        stem="6. 下列关于细胞结构与功能的叙述，正确的是（　　）（多选）",
        options=[
            "A. 核糖体是合成蛋白质的场所",
            "B. 线粒体是有氧呼吸的主要场所",
            "C. 所有细胞都具有成形的细胞核",
            "D. 所有植物细胞中都含有叶绿体",
        ],
        answer="AB",
    ),
    # Base pairing: A = T = 20%, so G + C = 60% and G = C = 30%.
    ProblemSpec(
        id="biology-zh-dna-bases",
        subject="biology",
        problem_type="fill_blank",
        lang="zh",
        stem="11. 某双链 DNA 分子中，腺嘌呤（A）占全部碱基的 20%，则该 DNA 分子中鸟嘌呤（G）占全部"
        "碱基的 ________%。",
        answer="30",
    ),
    # Red x white (rr) giving 1:1 means the red parent is Rr; red offspring are Rr, selfed -> 1/4 rr.
    ProblemSpec(
        id="biology-en-flower-colour",
        subject="biology",
        problem_type="free_response",
        lang="en",
        stem="19. In a plant species, red flowers (R) are dominant over white flowers (r). A red-flowered "
        "plant is crossed with a white-flowered plant, and the offspring are red : white = 1 : 1.\n"
        "(1) What is the genotype of the red-flowered parent?\n"
        "(2) If the red-flowered offspring are self-pollinated, what fraction of the next "
        "generation has white flowers?",
        answer=["Rr", "\\frac{1}{4}"],
    ),
]
